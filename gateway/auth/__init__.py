"""Sender authentication: is the header From's domain vouched for?

Two modes (``[policy] auth_mode``): ``upstream`` trusts Authentication-Results only from the
practice's own MTA (``trusted_authserv_ids``; every other A-R header is ignored), and
``verify`` checks DKIM signatures aligned with the From domain and the domain's DMARC policy
itself.  ``off`` (the embedded default) records no verdict.
"""
