"""Word frequencies of a text, written as an async tool (no dependencies).

    hanzo-node run python examples/python/word_freq.py \
        --params '{"text": "the cat and the hat", "top": 2}'

`run` is a coroutine: the runner awaits it. It counts words in chunks concurrently
(asyncio.gather) to show that an async tool can use the event loop.
"""

import asyncio
import collections
import re

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


async def _count(chunk):
    await asyncio.sleep(0)
    return collections.Counter(w.lower() for w in WORD.findall(chunk))


async def run(params):
    text = params.get("text", "")
    top = int(params.get("top", 10))
    lines = text.splitlines() or [text]
    counts = collections.Counter()
    for c in await asyncio.gather(*(_count(line) for line in lines)):
        counts.update(c)
    return {
        "words": sum(counts.values()),
        "distinct": len(counts),
        "top": [[w, n] for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
    }
