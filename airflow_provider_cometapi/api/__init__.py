"""Transport-free pieces of the CometAPI client: settings, request, response, retry rules."""
