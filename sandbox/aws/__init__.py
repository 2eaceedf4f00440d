"""AWS for the local stack: moto's server with an EC2 fault hook and EC2's client-token memory
(``sandbox.aws.hook``), started as ``python -m sandbox.aws``."""
