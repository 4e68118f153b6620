"""The room node: drivers, presence, vision, local rules, outbox and MQTT link."""
