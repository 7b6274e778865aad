"""``jobforge demo``: one section per API family, run against an embedded server."""
