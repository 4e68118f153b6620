"""The room node: readers, doors, presence, vision, local rules, outbox and MQTT link."""
