"""Monitoring: is the service healthy, what has training done, how do the models fare live."""
