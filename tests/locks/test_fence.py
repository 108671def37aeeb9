"""Fencing in the database: ``held.fence(queryset).update(...)`` refuses a stale holder.

Run on SQLite and, where one is reachable, PostgreSQL (``tests/settings.py``), with
real locks on the shared standalone server: a second holder gets the lock after the
first one's lease ended, writes, and the first one's late write must change nothing.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.db.models import F

from django_redis_resilience import lock
from django_redis_resilience.exceptions import LockNotAcquired, StaleFence
from django_redis_resilience.locks import Held
from tests.fencing_app.models import Account, Ledger

from .conftest import unique

#: The databases the test database set-up knows: PostgreSQL where one is reachable.
DATABASES = ["default", *(["postgres"] if "postgres" in settings.DATABASES else [])]


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgresql"])
def db_alias(request: pytest.FixtureRequest) -> str:
    alias = str(request.param)
    if alias not in settings.DATABASES:
        pytest.skip(
            "no PostgreSQL server reachable at DRR_POSTGRES (default 127.0.0.1:5432), or "
            "psycopg is not installed"
        )
    assert connections[alias].vendor in ("sqlite", "postgresql")
    return alias


pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


def _successive_holders(name: str) -> tuple[Held, Held]:
    """The first holder's lease ends (it is paused, not released); another thread, a
    second holder, takes over."""
    first = lock(name, timeout=0.2, renew=False).acquire(wait=0)
    time.sleep(0.3)
    with ThreadPoolExecutor(1) as other:
        second = other.submit(lock(name, timeout=5, renew=False).acquire, wait=1).result()
    assert first.token is not None
    assert second.token is not None
    assert second.token > first.token
    return first, second


def test_the_newest_holder_writes_and_a_stale_one_changes_nothing(
    standalone: str, db_alias: str
) -> None:
    account = Account.objects.using(db_alias).create(balance=100)
    rows = Account.objects.using(db_alias).filter(pk=account.pk)
    first, second = _successive_holders(unique("acct"))

    assert second.fence(rows).update(balance=F("balance") - 30, owner="second") == 1
    with pytest.raises(StaleFence, match="newer holder"):
        first.fence(rows).update(balance=F("balance") - 50, owner="first")

    account.refresh_from_db(using=db_alias)
    assert (account.balance, account.owner, account.fence) == (70, "second", second.token)
    second.release()


def test_a_holder_may_write_its_rows_again(standalone: str, db_alias: str) -> None:
    account = Account.objects.using(db_alias).create(balance=0)
    rows = Account.objects.using(db_alias).filter(pk=account.pk)
    with lock(unique("acct")) as held:
        assert held.fence(rows).update(balance=F("balance") + 1) == 1
        assert held.fence(rows).update(balance=F("balance") + 1) == 1
    account.refresh_from_db(using=db_alias)
    assert (account.balance, account.fence) == (2, held.token)


def test_a_stale_write_to_several_rows_is_undone_whole(standalone: str, db_alias: str) -> None:
    """One row already written by the newer holder: none of the stale holder's rows change."""
    manager = Account.objects.using(db_alias)
    untouched, taken = manager.create(balance=1), manager.create(balance=2)
    first, second = _successive_holders(unique("acct"))
    second.fence(manager.filter(pk=taken.pk)).update(owner="second")

    with pytest.raises(StaleFence):
        first.fence(manager.filter(pk__in=[untouched.pk, taken.pk])).update(owner="first")

    assert sorted(manager.values_list("pk", "owner", "fence")) == sorted(
        [(untouched.pk, "", 0), (taken.pk, "second", second.token)]
    )
    second.release()


def test_no_row_matched_is_no_error(standalone: str, db_alias: str) -> None:
    with lock(unique("acct")) as held:
        assert held.fence(Account.objects.using(db_alias).filter(pk=-1)).update(owner="x") == 0


def test_a_fence_column_of_another_name(standalone: str, db_alias: str) -> None:
    ledger = Ledger.objects.using(db_alias).create(total=5)
    rows = Ledger.objects.using(db_alias).filter(pk=ledger.pk)
    first, second = _successive_holders(unique("ledger"))
    assert second.fence(rows, field="writer_token").update(total=6) == 1
    with pytest.raises(StaleFence):
        first.fence(rows, field="writer_token").update(total=7)
    ledger.refresh_from_db(using=db_alias)
    assert (ledger.total, ledger.writer_token) == (6, second.token)
    second.release()


def test_the_fence_is_set_by_the_lock_not_the_caller(standalone: str, db_alias: str) -> None:
    rows = Account.objects.using(db_alias).all()
    with lock(unique("acct")) as held, pytest.raises(ValueError, match="sets 'fence'"):
        held.fence(rows).update(fence=10**12)


def test_without_the_lock_there_is_no_token_to_write_with(standalone: str) -> None:
    name = unique("acct")

    def skipped_in_another_thread() -> Held:
        with lock(name, wait=0, on_busy="skip") as held:
            return held

    with lock(name), ThreadPoolExecutor(1) as other:
        skipped = other.submit(skipped_in_another_thread).result()
        assert not skipped
        with pytest.raises(LockNotAcquired, match="no fencing token"):
            skipped.fence(Account.objects.all())


def test_aupdate_from_async_code(standalone: str, db_alias: str) -> None:
    account = Account.objects.using(db_alias).create(balance=10)
    rows = Account.objects.using(db_alias).filter(pk=account.pk)
    first, second = _successive_holders(unique("acct"))

    async def writes() -> None:
        try:
            assert await second.fence(rows).aupdate(balance=11) == 1
            with pytest.raises(StaleFence):
                await first.fence(rows).aupdate(balance=12)
        finally:
            # The ORM ran in sync_to_async's thread, on a connection of its own: closed,
            # or the test database could not be dropped.
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    asyncio.run(writes())
    account.refresh_from_db(using=db_alias)
    assert (account.balance, account.fence) == (11, second.token)
    second.release()
