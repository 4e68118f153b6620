"""The room node: readers, doors, presence, local rules, outbox and MQTT link."""
