"""Contract servers: loopback HTTP servers that answer as a metrics vendor's documented API does.

Why this exists: most metric providers are cloud APIs (Datadog, New Relic, CloudWatch, ...) that no test can
reach. A contract server checks what the provider sends (method, path, query parameters, auth headers taken from
the template's Secret, a signature) and answers in the vendor's documented shape: a value, an empty result, an
error, a rate limit. ``server`` holds the machinery every contract shares; one module per vendor holds its contract.

What it must not do: listen beyond loopback, answer a request whose credentials are wrong with data, or know
about Canaries (a test says which query gets which answer through ``server.Answers``).
"""
