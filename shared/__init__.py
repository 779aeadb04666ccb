"""Code the three Quanzu services share: settings, database, events, Kafka plumbing, metrics, problems."""
