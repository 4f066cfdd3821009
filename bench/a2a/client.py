"""Sends N messages to the A2A echo agent with the SDK's client (JSON-RPC over HTTP, one
keep-alive connection), checks each answer carries the same text, and prints the round-trip
times as JSON on stdout: {"sdk", "rounds", "payload_bytes", "p50_us", "p99_us", "mean_us",
"times_ns"} (every round, in order).
A round trip is the SDK's whole path: build the Message, encode, HTTP to the server, its
decode, the echo agent, its encode, HTTP back, decode, take the text."""

import argparse
import json
import statistics
import time
from importlib.metadata import version

import uvloop

from a2a.client import ClientConfig, create_client
from a2a.types import Role, SendMessageRequest

from common import only_text, text_message


async def round_trip(client, message_id: str, text: str) -> None:
    request = SendMessageRequest(message=text_message(message_id, Role.ROLE_USER, text))
    answers = [r async for r in client.send_message(request)]
    if len(answers) != 1 or not answers[0].HasField('message'):
        raise RuntimeError(f'expected one message back, got {answers}')
    if only_text(answers[0].message) != text:
        raise RuntimeError('the echo changed the text')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--url', required=True, help='the echo agent, http://127.0.0.1:PORT')
    parser.add_argument('--text', required=True, help='the text part, same as the Wasm agents')
    parser.add_argument('--rounds', type=int, default=2000)
    parser.add_argument('--warmup', type=int, default=50)
    args = parser.parse_args()

    # Resolves the agent card once (not timed), then keeps one connection.
    client = await create_client(args.url, client_config=ClientConfig(streaming=False))
    for i in range(args.warmup):
        await round_trip(client, f'w{i}', args.text)
    times = []
    for i in range(args.rounds):
        start = time.perf_counter_ns()
        await round_trip(client, f'm{i}', args.text)
        times.append(time.perf_counter_ns() - start)
    await client.close()

    ordered = sorted(times)
    at = lambda p: ordered[int((len(ordered) - 1) * p)] / 1000
    print(
        json.dumps(
            {
                'sdk': f"a2a-sdk {version('a2a-sdk')}",
                'rounds': args.rounds,
                'payload_bytes': len(args.text.encode()),
                'p50_us': at(0.5),
                'p99_us': at(0.99),
                'mean_us': statistics.fmean(times) / 1000,
                'times_ns': times,
            }
        )
    )


if __name__ == '__main__':
    uvloop.run(main())
