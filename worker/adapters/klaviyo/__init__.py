"""Klaviyo's API: the client, bulk jobs, events, payloads, error and response classifiers."""
