"""Neutral helpers every app may use: the API's pieces, admin bases, the outbox machinery and
domain events. Core imports no app of the project."""
