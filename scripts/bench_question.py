"""Time questions to a running askgate (the bundled model by default).

Usage: .venv/bin/python scripts/bench_question.py [BASE_URL] [COUNT]
Registers a throwaway user, asks COUNT questions one after the other, and prints the
median and worst latency and the completion tokens per second as measured by askgate.
"""

import statistics
import sys
import time
import uuid

import httpx


def main() -> None:
    base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    username = f"bench-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=base_url, timeout=300) as client:
        client.post(
            "/auth/register", json={"username": username, "password": password}
        ).raise_for_status()
        tokens = client.post(
            "/auth/token", data={"username": username, "password": password}
        )
        tokens.raise_for_status()
        headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        walls, rates = [], []
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(
                "/questions",
                json={"content": "What is the capital of France?", "max_tokens": 64},
                headers=headers,
            )
            walls.append(time.perf_counter() - started)
            response.raise_for_status()
            question = response.json()
            produced = question["usage"]["completion_tokens"] or 0
            rates.append(produced / max(question["latency_ms"], 1) * 1000)
    print(f"questions: {count}")
    median, worst = statistics.median(walls), max(walls)
    print(f"wall time per question: median {median:.3f}s, worst {worst:.3f}s")
    print(f"completion tokens/s: median {statistics.median(rates):.1f}")


if __name__ == "__main__":
    main()
