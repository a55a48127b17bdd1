"""The idle rules alone: the days a deployment was used in, a verdict out."""

from __future__ import annotations

from datetime import datetime

from app.deployments.idle import IdleAction, IdleRules, IdleVerdict, judge

RULES = IdleRules(day_seconds=10.0, notice_days=7, delete_days=28)


def at(day: float) -> datetime:
    """A moment `day` days (of RULES) after the epoch."""
    return RULES.start_of(0) + (RULES.start_of(1) - RULES.start_of(0)) * day


def verdict(
    now: float,
    used: tuple[int, ...] = (),
    *,
    noticed: float | None = None,
    keep: bool = False,
    tried: float | None = None,
    retry: float | None = None,
) -> IdleVerdict:
    """`noticed`: the day (of RULES) a channel carried the notice to the owners, if one did;
    `tried`: the day it was sent out (carried or not); `retry`: when a refused issue is due."""
    return judge(
        rules=RULES,
        used_days=used,
        counted_from=at(100.5),
        now=at(now),
        keep=keep,
        noticed_at=None if noticed is None else at(noticed),
        notice_tried_at=None if tried is None else at(tried),
        notice_retry_at=None if retry is None else at(retry),
    )


def test_seven_whole_unused_days_bring_the_notice_and_twenty_eight_the_deletion() -> None:
    # Counted from day 100: days 101..107 unused are seven whole days once day 108 starts.
    assert verdict(107.9).action is IdleAction.none
    assert verdict(107.9).unused_days == 6
    assert verdict(108.0).action is IdleAction.notice
    assert verdict(108.0, noticed=108.0).action is IdleAction.none  # told once
    assert verdict(128.9, noticed=108.0).action is IdleAction.none
    assert verdict(129.0, noticed=108.0).action is IdleAction.delete
    assert verdict(100.6).notice_at == at(108) and verdict(100.6).delete_at == at(129)


def test_any_use_resets_the_count_and_withdraws_the_notice() -> None:
    assert verdict(110.0, used=(105,), noticed=108.0).action is IdleAction.withdraw
    assert verdict(113.0, used=(105,)).action is IdleAction.notice
    assert verdict(113.0, used=(105,)).delete_at == at(134)
    # A use today counts at once: today is never an unused day.
    assert verdict(140.2, used=(140,), noticed=130.0).action is IdleAction.withdraw
    assert verdict(140.2, used=(140,)).unused_days == 0


def test_a_deletion_always_follows_the_notice_by_the_days_between_the_rules() -> None:
    # The platform was off from day 101 to 140: it tells the owners first, deletes 21 days on.
    late = verdict(140.0)
    assert late.action is IdleAction.notice and late.delete_at == at(161)
    assert verdict(160.9, noticed=140.0).action is IdleAction.none
    assert verdict(161.0, noticed=140.0).action is IdleAction.delete


def test_days_before_the_rules_first_looked_are_not_held_against_a_deployment() -> None:
    assert verdict(101.0, used=(3, 50)).unused_days == 0


def test_keep_exempts_and_withdraws_an_open_notice() -> None:
    kept = verdict(500.0, keep=True)
    assert kept.action is IdleAction.none and kept.notice_at is None and kept.delete_at is None
    assert verdict(500.0, keep=True, noticed=108.0).action is IdleAction.withdraw


def test_zero_turns_either_rule_off() -> None:
    no_notice = IdleRules(day_seconds=10.0, notice_days=0, delete_days=28)
    no_delete = IdleRules(day_seconds=10.0, notice_days=7, delete_days=0)

    def action(rules: IdleRules, now: float) -> IdleAction:
        return judge(rules=rules, used_days=(), counted_from=at(100.5), now=at(now)).action

    assert action(no_notice, 110) is IdleAction.none
    assert action(no_notice, 129) is IdleAction.delete
    assert action(no_delete, 108) is IdleAction.notice
    assert (
        judge(
            rules=no_delete, used_days=(), counted_from=at(100), now=at(9000), noticed_at=at(108)
        ).action
        is IdleAction.none
    )
    assert (
        judge(rules=no_delete, used_days=(), counted_from=at(100), now=at(9000)).delete_at is None
    )


def test_a_notice_carried_by_a_notification_channel_alone_is_a_notice_given() -> None:
    # The issue was refused on day 108 (retried on 109); a channel delivered it that day.
    carried = verdict(128.9, tried=108.0, noticed=108.0, retry=200.0)
    assert carried.action is IdleAction.none and not carried.held
    assert verdict(129.0, tried=108.0, noticed=108.0, retry=200.0).action is IdleAction.delete
    # Delivered late (the channel was down for two days): the full warning from then.
    assert verdict(130.9, tried=108.0, noticed=110.0, retry=200.0).action is IdleAction.none
    assert verdict(131.0, tried=108.0, noticed=110.0, retry=200.0).action is IdleAction.delete


def test_a_refused_issue_is_tried_again_once_a_day_not_every_tick() -> None:
    assert verdict(108.0).action is IdleAction.notice
    for now in (108.1, 108.5, 108.99):  # ticks of the same day: nothing more
        assert verdict(now, tried=108.0, retry=109.0).action is IdleAction.none
    assert verdict(109.0, tried=108.0, retry=109.0).action is IdleAction.notice
    # Also once a channel carried the notice: the issue is the one place it is kept.
    assert verdict(109.0, tried=108.0, noticed=108.0, retry=109.0).action is IdleAction.notice


def test_a_notice_no_channel_carried_holds_the_deletion_however_long_it_is_unused() -> None:
    for now in (129.0, 160.0, 500.0):
        untold = verdict(now, tried=108.0, retry=now + 0.5)
        assert untold.action is IdleAction.none and untold.held
        assert untold.delete_at == at(now + 21)  # never before the full warning
    # Told at last on day 300 (issues turned on again): deleted 21 days after that.
    assert verdict(320.9, tried=108.0, noticed=300.0).action is IdleAction.none
    assert verdict(321.0, tried=108.0, noticed=300.0).action is IdleAction.delete
    assert not verdict(321.0, tried=108.0, noticed=300.0).held
    # Used again, or kept: the untold notice is withdrawn like a told one.
    assert verdict(310.0, used=(305,), tried=108.0).action is IdleAction.withdraw
    assert verdict(310.0, keep=True, tried=108.0).action is IdleAction.withdraw
    assert not verdict(310.0, keep=True, tried=108.0).held


def test_without_notices_nothing_is_held() -> None:
    no_notice = IdleRules(day_seconds=10.0, notice_days=0, delete_days=28)
    quiet = judge(rules=no_notice, used_days=(), counted_from=at(100.5), now=at(129))
    assert quiet.action is IdleAction.delete and not quiet.held
