"""Per-client turns to open a session: one at a time per client, none waiting on another client, bounded
waits, nothing left behind."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from gateway.session_openings import SessionOpenings, Turn


async def held(openings: SessionOpenings, key: str = "a") -> Turn:
    turn = await openings.turn(key)
    assert turn is not None
    return turn


async def test_a_clients_openings_take_turns_and_others_do_not_wait() -> None:
    openings = SessionOpenings()
    first = await held(openings)
    second = asyncio.create_task(openings.turn("a"))
    other = await asyncio.wait_for(openings.turn("b"), 1)  # another client is never held up
    assert other is not None
    await asyncio.sleep(0.05)
    assert not second.done()
    first.release()
    turn = await asyncio.wait_for(second, 1)
    assert turn is not None
    turn.release()
    other.release()
    assert openings.waiting() == 0


async def test_the_turn_passes_on_as_the_response_starts_and_releasing_twice_is_harmless() -> None:
    openings = SessionOpenings()
    turn = await held(openings)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    releasing = turn.releasing(send)
    next_turn = asyncio.create_task(openings.turn("a"))
    await asyncio.sleep(0.01)
    assert not next_turn.done()
    await releasing({"type": "http.response.start", "status": 200, "headers": []})
    assert (await asyncio.wait_for(next_turn, 1)) is not None
    turn.release()  # after the response started: nothing more to give up
    assert sent[0]["type"] == "http.response.start"
    assert openings.waiting() == 1


async def test_a_turn_that_does_not_come_in_time_is_refused_and_leaves_nothing() -> None:
    openings = SessionOpenings(wait_s=0.05)
    holder = await held(openings)
    assert await openings.turn("a") is None
    assert openings.waiting() == 1
    holder.release()
    assert openings.waiting() == 0


async def test_a_waiter_cancelled_leaves_the_queue_as_it_was() -> None:
    openings = SessionOpenings()
    holder = await held(openings)
    waiter = asyncio.create_task(openings.turn("a"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    holder.release()
    assert openings.waiting() == 0
    again = await asyncio.wait_for(openings.turn("a"), 1)
    assert again is not None
