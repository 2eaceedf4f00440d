"""Local stand-ins for what cannot run here (Jira, Leostream, AWS via moto) and the local stack launcher."""
