"""What every part of the gateway shares: config, database, addresses, templates, rules.

The classifier (a few thousand rule patterns and the learned model, about a second to load)
is loaded on first use, so commands that never classify (`patients list`, `db upgrade`...)
do not wait for it; `serve` loads it at start (`load_classifier`), so a broken rules file
still fails start."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway import db, keys
from gateway.addresses import Addresses
from gateway.auth.resolver import Resolver
from gateway.classification import Classifier
from gateway.config import Config
from gateway.group_commit import GroupCommit
from gateway.notices import Notices

log = logging.getLogger("gateway.services")


@dataclass
class Services:
    cfg: Config
    engine: Engine
    factory: sessionmaker[Session]
    addresses: Addresses
    notices: Notices
    resolver: Resolver = field(default_factory=Resolver)  # DNS; tests replace it
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    _group: GroupCommit | None = field(default=None, repr=False)
    _classifier: Classifier | None = field(default=None, repr=False)

    @classmethod
    def create(cls, cfg: Config, migrate: bool = True) -> "Services":
        keys.install(cfg)  # every encrypted column uses these keys (gateway.crypto)
        engine = db.make_engine(cfg.database_url)
        if migrate:
            db.ensure_schema(engine)
            from gateway.patients import fill_email_index
            with db.transaction(db.session_factory(engine)) as session:
                fill_email_index(session)
        return cls(cfg=cfg, engine=engine, factory=db.session_factory(engine),
                   addresses=Addresses(cfg.gateway.domain, cfg.gateway.separator),
                   notices=Notices(cfg.templates_dir, cfg.practice.timezone),
                   resolver=Resolver.from_config(cfg.policy))

    def transaction(self):
        return db.transaction(self.factory)

    def __post_init__(self) -> None:
        self._group = GroupCommit(self.transaction, self.committed, db.write_gate(self.engine))
        self.reader = db.reader(self.engine)  # sessions that only read (no write lock)
        self._classifier_lock = threading.Lock()

    @property
    def classifier(self) -> Classifier:
        """The rules and the model, loaded the first time they are asked for (content steps
        run in threads: one of them loads, the others wait for it).  A load that fails
        raises (RuleError, OSError) and is tried again on the next use."""
        classifier = self._classifier
        if classifier is None:
            with self._classifier_lock:
                if self._classifier is None:
                    self._classifier = Classifier.load(self.cfg.rules_dir)
                classifier = self._classifier
        return classifier

    @classifier.setter
    def classifier(self, classifier: Classifier) -> None:
        with self._classifier_lock:
            self._classifier = classifier

    def load_classifier(self) -> None:
        """Load the rules and the model now (serve: a broken rules file fails start)."""
        self.classifier  # noqa: B018  (the property loads them)

    @property
    def group(self) -> GroupCommit:
        """The group commit of this process: decisions of concurrent sessions written in
        one transaction (gateway.group_commit)."""
        return self._group

    def write(self, job: Callable, notify: bool = True):
        """Run JOB(session) in the next group commit; its result once committed.  NOTIFY:
        tell the `on_commit` listeners afterwards (new mail may be queued)."""
        return self.group.run(job, notify)

    def committed(self) -> None:
        """Tell listeners (the outbox worker) that new rows are committed."""
        for callback in list(self.on_commit):
            callback()

    def reload(self) -> None:
        """Reload rules and templates; on error the old ones stay and the error is raised."""
        classifier = Classifier.load(self.cfg.rules_dir)
        notices = Notices(self.cfg.templates_dir, self.cfg.practice.timezone)
        with self._classifier_lock:  # one swap, no half state
            self._classifier, self.notices = classifier, notices
        try:
            keys.reload(self.cfg)  # a key added since start (keys rotate) becomes current
        except keys.KeysUnavailable as e:
            log.error("keys not reloaded, the old ones stay", extra={"error": str(e)})

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
        self.engine.dispose()
