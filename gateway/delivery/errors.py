"""How a delivery backend reports failure: temporary (retry later) or permanent."""


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass
