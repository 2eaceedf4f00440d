"""A Jira Cloud stand-in: the REST subset VDI Studios and its clients use, and admin webhooks delivered like Jira's."""
