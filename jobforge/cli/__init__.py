"""The jobforge command line: serve, demo, jobs, models, accounts."""
