"""A Leostream Connection Broker stand-in: the REST API v1 subset, with AWS centers that scan EC2 (moto locally)."""
