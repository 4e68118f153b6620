"""The central supervisor: ingest, journal, custody state, rules, alerts, staff commands."""
