"""One module per inbound step; `gateway.pipeline` lists them in order."""
