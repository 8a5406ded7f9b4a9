"""Configuration: the resolvers the Hydra configs read from the registries
(:mod:`~medis.config.resolvers`) and the one validation pass over every key (:mod:`~medis.config.schema`)."""
