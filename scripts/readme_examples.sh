#!/usr/bin/env bash
# Runs every curl example of the README against a real `askgate serve` with the
# bundled model and prints each command with its real response, so the README can
# be refreshed from what the server actually says: bash scripts/readme_examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ASKGATE=${ASKGATE:-.venv/bin/askgate}
WORK=$(mktemp -d)
PORT=${EXAMPLES_PORT:-8000}
B=http://127.0.0.1:$PORT
export ASKGATE_DATA_DIR=$WORK/data
export ASKGATE_DAILY_TOKEN_QUOTA=50000
JAR=/tmp/askgate-readme-cookies  # the web page's login cookie, as a browser keeps it
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK" "$JAR"' EXIT

echo 'a long admin passphrase' | $ASKGATE create-admin --username root --password-stdin >/dev/null
$ASKGATE serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
until curl -sf "$B/health" >/dev/null; do sleep 0.5; done

show() {  # show 'title' <<'CMD' ... CMD: prints the command as written, then runs it
  local args
  args=$(cat)
  echo "### $1"
  echo '```console'
  echo "\$ curl $args" | sed "s#\$B\\b#http://127.0.0.1:8000#g"
  eval "curl -sS $args" | shorten
  echo
  echo '```'
}
shorten() {  # access tokens and API keys are cut short in the README
  sed -E -e 's/(eyJ[A-Za-z0-9_-]{8})[A-Za-z0-9._-]+/\1…/g' \
    -e 's/(ag-[A-Za-z0-9_-]{5})[A-Za-z0-9_-]{38}/\1…/g' \
    -e 's/(askgate_refresh=[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+/\1…/g'
}
showpy() {  # showpy 'title' <<'PY' ... PY: prints a Python client script, then runs it
  local code
  code=$(cat)
  echo "### $1"
  echo '```python'
  echo "$code"
  echo '```'
  echo '```console'
  echo "$code" | OPENAI_BASE_URL=$B/v1 OPENAI_API_KEY=$KEY .venv/bin/python - | shorten
  echo '```'
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

show "Health (anonymous: cheap checks, no upstream call)" <<'CMD'
$B/health
CMD
show "Liveness probe" <<'CMD'
$B/health/live
CMD
show "Readiness probe (database, Redis when configured, a model whose circuit is not open)" <<'CMD'
$B/health/ready
CMD
show "Register" <<'CMD'
-X POST $B/auth/register -H 'Content-Type: application/json' \
  -d '{"username": "alice", "password": "correct horse battery", "email": "alice@example.com"}'
CMD
show "Unknown fields such as role are refused" <<'CMD'
-X POST $B/auth/register -H 'Content-Type: application/json' \
  -d '{"username": "mallory", "password": "correct horse battery", "role": "admin"}'
CMD
show "Log in (OAuth2 password form)" <<'CMD'
-X POST $B/auth/token -d 'username=alice&password=correct horse battery'
CMD
PAIR=$(curl -s -X POST $B/auth/token -d 'username=alice&password=correct horse battery')
TOKEN=$(echo "$PAIR" | field '["access_token"]')
REFRESH=$(echo "$PAIR" | field '["refresh_token"]')
ADMIN=$(curl -s -X POST $B/auth/token -d 'username=root&password=a long admin passphrase' | field '["access_token"]')

show "Read my account" <<'CMD'
$B/users/me -H "Authorization: Bearer $TOKEN"
CMD
show "Update my account" <<'CMD'
-X PATCH $B/users/me -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"email": "alice@example.org"}'
CMD
show "Ask a question" <<'CMD'
-X POST $B/questions -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"content": "What is the capital of France?", "max_tokens": 48, "temperature": 0}'
CMD
show "Ask, with the answer streamed as server-sent events" <<'CMD'
-N -X POST $B/questions -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"content": "Say hello in three words.", "max_tokens": 12, "temperature": 0, "stream": true}'
CMD
show "My latest questions (the last 3 unless limit says otherwise)" <<'CMD'
$B/questions/me -H "Authorization: Bearer $TOKEN"
CMD
show "My token usage today" <<'CMD'
$B/users/me/usage -H "Authorization: Bearer $TOKEN"
CMD
show "My usage per UTC day and model (the last 30 days unless from/to say otherwise)" <<'CMD'
$B/users/me/usage/daily -H "Authorization: Bearer $TOKEN"
CMD
show "The same as CSV" <<'CMD'
"$B/users/me/usage/daily?format=csv" -H "Authorization: Bearer $TOKEN"
CMD
QID=$(curl -s "$B/questions/me?limit=1" -H "Authorization: Bearer $TOKEN" | field '[0]["id"]')
show "Page back with before_id" <<'CMD'
"$B/questions/me?limit=1&before_id=$QID" -H "Authorization: Bearer $TOKEN"
CMD
show "Find a question: q searches the question and its answer, ignoring case" <<'CMD'
"$B/questions/me?q=CAPITAL" -H "Authorization: Bearer $TOKEN"
CMD
show "Filters combine: text, a time window (UTC), a status and a model" <<'CMD'
-G $B/questions/me -H "Authorization: Bearer $TOKEN" --data-urlencode "q=hello" \
  -d since=2026-12-01T00:00:00Z -d status=answered -d model=smollm2-135m-instruct
CMD
show "since after until is refused" <<'CMD'
"$B/questions/me?since=2026-12-02&until=2026-12-01" -H "Authorization: Bearer $TOKEN"
CMD
show "Read one question" <<'CMD'
$B/questions/$QID -H "Authorization: Bearer $TOKEN"
CMD
show "Delete one question" <<'CMD'
-i -X DELETE $B/questions/$QID -H "Authorization: Bearer $TOKEN"
CMD

show "Create a personal API key for scripts and OpenAI clients (shown this once)" <<'CMD'
-X POST $B/users/me/api-keys -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"name": "laptop", "expires_in_days": 90}'
CMD
KEY=$(curl -s -X POST $B/users/me/api-keys -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"name": "scripts"}' | field '["key"]')
show "My API keys (the key itself is never shown again)" <<'CMD'
$B/users/me/api-keys -H "Authorization: Bearer $TOKEN"
CMD
show "The OpenAI API: the models" <<'CMD'
$B/v1/models -H "Authorization: Bearer $KEY"
CMD
show "The OpenAI API: a chat completion" <<'CMD'
$B/v1/chat/completions -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model": "smollm2-135m-instruct", "max_tokens": 16, "temperature": 0,
       "messages": [{"role": "system", "content": "Answer in one sentence."},
                    {"role": "user", "content": "What is the capital of Italy?"}]}'
CMD
show "The OpenAI API: streamed, with the usage in the last chunk" <<'CMD'
-N $B/v1/chat/completions -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model": "smollm2-135m-instruct", "max_tokens": 6, "temperature": 0, "stream": true,
       "stream_options": {"include_usage": true},
       "messages": [{"role": "user", "content": "Count to three."}]}'
CMD
show "The OpenAI API: errors in OpenAI's shape" <<'CMD'
$B/v1/chat/completions -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}'
CMD
showpy "The openai SDK, unchanged (OPENAI_BASE_URL=http://127.0.0.1:8000/v1, OPENAI_API_KEY=ag-…)" <<'PY'
from openai import OpenAI

client = OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
print([model.id for model in client.models.list()])
answer = client.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the capital of Spain?"}],
    max_tokens=16,
    temperature=0,
)
print(answer.choices[0].message.content, answer.usage.total_tokens)
for chunk in client.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "Name a colour."}],
    max_tokens=8,
    temperature=0,
    stream=True,
):
    if chunk.choices:
        print(repr(chunk.choices[0].delta.content))
PY
show "A key asks questions too, but never manages the account" <<'CMD'
-X PATCH $B/users/me -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"email": "mallory@example.com"}'
CMD
KID=$(curl -s $B/users/me/api-keys -H "Authorization: Bearer $TOKEN" | field '[0]["id"]')
show "Revoke a key: it fails at once, on every worker" <<'CMD'
-i -X DELETE $B/users/me/api-keys/$KID -H "Authorization: Bearer $TOKEN"
CMD
show "A revoked key" <<'CMD'
$B/v1/models -H "Authorization: Bearer $KEY"
CMD

show "Refresh: a new pair, the old refresh token is used up" <<'CMD'
-X POST $B/auth/refresh -H 'Content-Type: application/json' \
  -d "{\"refresh_token\": \"$REFRESH\"}"
CMD
show "Presenting a used refresh token again revokes that whole login" <<'CMD'
-X POST $B/auth/refresh -H 'Content-Type: application/json' \
  -d "{\"refresh_token\": \"$REFRESH\"}"
CMD
PAIR=$(curl -s -X POST $B/auth/token -d 'username=alice&password=correct horse battery')
TOKEN=$(echo "$PAIR" | field '["access_token"]')
REFRESH=$(echo "$PAIR" | field '["refresh_token"]')
show "Log out" <<'CMD'
-i -X POST $B/auth/logout -H 'Content-Type: application/json' \
  -d "{\"refresh_token\": \"$REFRESH\"}"
CMD
show "The access token of that login stops working at once" <<'CMD'
$B/users/me -H "Authorization: Bearer $TOKEN"
CMD
show "The web page's login: the refresh token in an HttpOnly cookie, null in the JSON" <<'CMD'
-i -X POST $B/auth/token -H 'X-Askgate-Web: 1' -c /tmp/askgate-readme-cookies \
  -d 'username=alice&password=correct horse battery'
CMD
show "The web page refreshes with its cookie (which is rotated, one use each)" <<'CMD'
-X POST $B/auth/refresh -H 'X-Askgate-Web: 1' \
  -b /tmp/askgate-readme-cookies -c /tmp/askgate-readme-cookies
CMD
show "Another site cannot use the cookie" <<'CMD'
-X POST $B/auth/refresh -H 'X-Askgate-Web: 1' -H 'Origin: https://evil.example' \
  -b /tmp/askgate-readme-cookies
CMD
show "Signing out of the web page revokes its login and clears the cookie" <<'CMD'
-i -X POST $B/auth/logout -H 'X-Askgate-Web: 1' -b /tmp/askgate-readme-cookies
CMD

TOKEN=$(curl -s -X POST $B/auth/token -d 'username=alice&password=correct horse battery' | field '["access_token"]')
show "Admin: create a user with a role" <<'CMD'
-X POST $B/users -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' \
  -d '{"username": "bob", "password": "another long passphrase", "role": "user"}'
CMD
show "Admin: list users (q searches usernames; the total is in X-Total-Count)" <<'CMD'
-i "$B/users?limit=2&q=b" -H "Authorization: Bearer $ADMIN"
CMD
BOB=$(curl -s "$B/users?q=bob" -H "Authorization: Bearer $ADMIN" | field '[0]["id"]')
show "Admin: read a user" <<'CMD'
$B/users/$BOB -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: change a role, deactivate, or override the daily token quota (0: unlimited)" <<'CMD'
-X PATCH $B/users/$BOB -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' -d '{"is_active": false, "daily_token_quota": 0}'
CMD
show "Admin: every user's questions" <<'CMD'
-i "$B/questions?limit=1" -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: every user's answered questions (X-Total-Count counts the matches)" <<'CMD'
-i "$B/questions?status=answered&limit=1" -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: usage per UTC day, user and model (user_id and model filter; paged)" <<'CMD'
-i "$B/usage/daily?limit=2" -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: who used most over the last 7 days (by tokens, or by=questions)" <<'CMD'
"$B/usage/leaderboard?days=7&limit=3" -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: the leaderboard as CSV" <<'CMD'
"$B/usage/leaderboard?days=7&by=questions&format=csv" -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: every user's API keys (user_id filters; the total is in X-Total-Count)" <<'CMD'
-i "$B/api-keys?limit=1" -H "Authorization: Bearer $ADMIN"
CMD
show "Admin: delete a user" <<'CMD'
-i -X DELETE $B/users/$BOB -H "Authorization: Bearer $ADMIN"
CMD
show "Export all my data (one JSON document; cut short here)" <<'CMD'
-D - "$B/users/me/export" -H "Authorization: Bearer $TOKEN" | head -c 900; echo ' …'
CMD
show "Prometheus metrics (a few lines of them)" <<'CMD'
$B/metrics | grep -E '^askgate_(questions_total|prompt_tokens_total|http_requests_total.*route="/questions")'
CMD
show "A user calling an admin route" <<'CMD'
$B/users -H "Authorization: Bearer $TOKEN"
CMD
show "Delete my account" <<'CMD'
-i -X DELETE $B/users/me -H "Authorization: Bearer $TOKEN"
CMD
