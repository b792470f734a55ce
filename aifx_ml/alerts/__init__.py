"""Alerts that reach people: rules that decide them, a table that keeps them, apprise to send."""
