"""The Keras side of a study's trial: the variant built, trained and audited."""
