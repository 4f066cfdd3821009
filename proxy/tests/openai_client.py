"""The official openai Python client against omega-proxy (run by tests/serve.rs).

Usage: openai_client.py BASE_URL MODEL
"""
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)

models = [m.id for m in client.models.list()]
assert models == [model], models

messages = [{"role": "user", "content": "What is the capital of France?"}]
whole = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
text = whole.choices[0].message.content
assert whole.choices[0].message.role == "assistant"
assert text and text.strip(), whole
assert whole.choices[0].finish_reason in ("stop", "length"), whole
assert 1 <= whole.usage.completion_tokens <= 12, whole.usage

stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=12, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
assert "".join(pieces) == text, (pieces, text)
assert finish == whole.choices[0].finish_reason, finish
assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage

seeded = [
    client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, temperature=0.8, seed=7
    ).choices[0].message.content
    for _ in range(2)
]
assert seeded[0] == seeded[1], seeded

try:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "word " * 4000}], max_tokens=4
    )
    raise AssertionError("an oversized prompt was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400
    assert e.code == "context_length_exceeded", e.body

print("openai client: ok")
