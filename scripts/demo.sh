#!/usr/bin/env bash
# keyhold's main job on a throwaway SoftHSM token in ./var/demo: installs what
# is missing, builds, and shows what keyhold does, in plain words.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Installing what is missing and building keyhold"
scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default --target keyhold >/dev/null
keyhold="$root/build/default/src/keyhold"
keyhold() { "$keyhold" "$@"; }

say "A throwaway SoftHSM token, a keyhold.toml, a SQLite store and a PIN file (mode 0600) in var/demo"
rm -rf var/demo
run keyhold init --dev --dir var/demo
export KEYHOLD_CONFIG="$root/var/demo/keyhold.toml"
echo "(KEYHOLD_CONFIG=$KEYHOLD_CONFIG: keyhold finds its configuration there)"

say "The token keyhold talks to (through PKCS#11, no login needed for this)"
run keyhold token info

say "One key of every type, each generated inside the token: private, sensitive, never extractable"
for type in rsa-2048 rsa-3072 rsa-4096 ec-p256 ec-p384 ed25519 aes-256; do
  printf '$ keyhold key create demo-%s --type %s\n' "$type" "$type"
  keyhold key create "demo-$type" --type "$type" | head -1
done

say "The keys, with the security attributes the token reports for each"
run keyhold key list

say "One key in full: its RFC 7512 PKCS#11 URI and attributes read back from the token"
run keyhold key show demo-ec-p256

say "Public keys leave the token; private keys never do"
for type in rsa-2048 ec-p256 ed25519; do
  run keyhold key public "demo-$type"
done
for type in rsa-3072 ec-p384 ed25519; do
  run keyhold key public "demo-$type" --format openssh
done

say "Each key's URI, for tools that speak PKCS#11 (ssh -I, pkcs11-tool, openssl with a provider)"
for type in rsa-2048 rsa-3072 rsa-4096 ec-p256 ec-p384 ed25519 aes-256; do
  printf '%-16s %s\n' "demo-$type" "$(keyhold key show "demo-$type" | sed -n 's/^  uri: *//p')"
done

say "A secret key has no public half, and keyhold says so"
run keyhold key public demo-aes-256 || echo "(exit status $?: as documented in docs/cli.md)"

say "Destroying a key removes it from the token; the store keeps the record"
run keyhold key destroy demo-rsa-4096 --yes
run keyhold key list --all

say "A private PKI: a root CA and an intermediate, both keys generated in the token"
run keyhold ca init-root demo-root --key-type ec-p384 --subject "CN=keyhold demo root,O=keyhold demo"
run keyhold ca init-intermediate demo-issuing --parent demo-root --key-type ec-p256 \
  --subject "CN=keyhold demo issuing,O=keyhold demo" --path-len 0

say "A service asks for a certificate with a CSR (its key made by openssl); keyhold signs it in the token"
work="$root/var/demo/pki"
mkdir -p "$work"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/web.key" \
  -subj /CN=web.demo.test -addext subjectAltName=DNS:web.demo.test -out "$work/web.csr" 2>/dev/null
run keyhold ca issue --ca demo-issuing --profile server --csr "$work/web.csr" \
  --out "$work/web.pem" --chain-out "$work/web-chain.pem"
keyhold ca chain demo-root --out "$work/root.pem"
echo "The chain: web.pem <- demo-issuing <- demo-root, checked by openssl (it did not make the bytes):"
run openssl verify -x509_strict -CAfile "$work/root.pem" -untrusted "$work/web-chain.pem" "$work/web.pem"

say "Revoking it: the next CRL, signed in the token, lists it and openssl refuses the certificate"
serial=$(openssl x509 -in "$work/web.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//')
run keyhold ca revoke --ca demo-issuing --serial "$serial" --reason keyCompromise
run keyhold ca crl --ca demo-issuing --out "$work/demo-issuing.crl"
openssl crl -in "$work/demo-issuing.crl" -noout -text | sed -n '/Revoked Certificates/,/Signature Algorithm/p'
run openssl verify -crl_check -CRLfile "$work/demo-issuing.crl" -CAfile "$work/root.pem" \
  -untrusted "$work/web-chain.pem" "$work/web.pem" || echo "(refused, as it should be: the certificate is revoked)"
run keyhold ca certs --ca demo-issuing

say "An SSH user CA whose key stays in the token; its public key is what sshd's TrustedUserCAKeys lists"
ssh_dir="$root/var/demo/ssh"
mkdir -p "$ssh_dir"
run keyhold ssh init-ca demo-users --key-type ed25519
run keyhold ssh ca-key demo-users

say "Alice's key (made by ssh-keygen, as she would) gets an 8-hour certificate for the login 'alice'"
ssh-keygen -q -t ed25519 -N "" -C alice@laptop -f "$ssh_dir/alice"
run keyhold ssh sign --ca demo-users --public-key "$ssh_dir/alice.pub" --type user --key-id alice@laptop \
  --principals alice --validity 8h --out "$ssh_dir/alice-cert.pub"
echo "ssh-keygen reads it and checks the CA's signature while doing so (it did not make the bytes):"
run ssh-keygen -L -f "$ssh_dir/alice-cert.pub"

say "Revoking it: keyhold's KRL is what sshd's RevokedKeys reads, and ssh-keygen -Q agrees"
run keyhold ssh revoke --ca demo-users --key-id alice@laptop
run keyhold ssh krl --ca demo-users --out "$ssh_dir/demo-users.krl"
run ssh-keygen -Q -f "$ssh_dir/demo-users.krl" "$ssh_dir/alice-cert.pub" || echo "(exit status $?: revoked, as it should be)"

say "Envelope encryption: a KEK, an AES-256 key in the token that only encrypts and decrypts, in versions"
env_dir="$root/var/demo/envelope"
mkdir -p "$env_dir"
run keyhold kek create demo-data --rotation-period 30d

say "A data key for an application: drawn in the token, handed out in clear (here to a 0600 file) and encrypted under the KEK"
printf '$ keyhold datakey generate --kek demo-data --context app=demo --plaintext-out %s > %s\n' \
  "$env_dir/data.key" "$env_dir/data.key.kh1"
keyhold datakey generate --kek demo-data --context app=demo --plaintext-out "$env_dir/data.key" > "$env_dir/data.key.kh1"
echo "The ciphertext, which is what the application stores beside its data:"
run cat "$env_dir/data.key.kh1"
run ls -l "$env_dir/data.key"
keyhold decrypt --context app=demo --in "$env_dir/data.key.kh1" | cmp - "$env_dir/data.key" &&
  echo "(keyhold decrypt of the stored ciphertext, with the same context, gives back the same data key)"

say "Sealing a 5 MB file: a fresh data key encrypts it locally, in segments; only the data key goes to the token"
head -c 5000000 /dev/urandom > "$env_dir/report.bin"
run keyhold seal --kek demo-data --context file=report.bin --in "$env_dir/report.bin" --out "$env_dir/report.bin.khs"

say "Rotating the KEK: version 2 encrypts from now on, version 1 still decrypts what it encrypted"
printf '$ keyhold kek rotate demo-data\n'
keyhold kek rotate demo-data > /dev/null
run keyhold kek show demo-data

say "Unsealing the file sealed under version 1, and comparing it with the original"
run keyhold unseal --context file=report.bin --in "$env_dir/report.bin.khs" --out "$env_dir/report.out"
run cmp "$env_dir/report.bin" "$env_dir/report.out" && echo "(identical)"

say "The encryption context is authenticated, not stored: the wrong one fails, and nothing is written"
run keyhold unseal --context file=other.bin --in "$env_dir/report.bin.khs" --out "$env_dir/wrong.out" ||
  echo "(exit status $?: as documented in docs/envelope.md)"
ls "$env_dir/wrong.out" 2>/dev/null || echo "(no $env_dir/wrong.out)"

say "The service: keyhold serve, HTTPS with mutual TLS, on a free port (init --dev made its CA, certificates and policy)"
dev="$root/var/demo"
api_dir="$dev/api"
mkdir -p "$api_dir"
serve_out="$api_dir/serve.out"
serve_pid=""
# Whatever happens from here on, the service does not outlive the demo.
stop_service() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
}
trap stop_service EXIT
trap 'exit 130' INT TERM
printf '$ keyhold serve --listen 127.0.0.1:0 &\n'
"$keyhold" serve --listen 127.0.0.1:0 > "$serve_out" 2> "$api_dir/serve.err" &
serve_pid=$!
address=""
for _ in $(seq 1 300); do
  address=$(sed -n 's#^keyhold serve: listening on https://\([^ ]*\).*#\1#p' "$serve_out")
  [ -n "$address" ] && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$address" ]; then
  echo "keyhold serve did not start:" >&2
  cat "$serve_out" "$api_dir/serve.err" >&2
  exit 1
fi
cat "$serve_out"
url="https://$address"
echo "(port 0: the kernel picked the port; the service printed where it listens)"

# curl as the development client 'admin', whom the development policy allows everything.
# --fail-with-body: an unexpected HTTP error stops the demo, showing the error body.
api() { curl -sS --fail-with-body --cacert "$dev/ca.pem" --cert "$dev/admin.pem" --key "$dev/admin-key.pem" "$@"; }
show() { printf '$ curl --cacert ca.pem --cert admin.pem --key admin-key.pem %s\n' "$*"; }
# The value of a JSON string field of a one-line answer (keyhold's answers are one line).
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
# A file's text as a JSON string's content (PEM: newlines become \n).
json_text() { awk '{ printf "%s\\n", $0 }' "$1"; }

say "Every client presents a certificate: here 'admin' (CN=admin, from the dev CA); the token, store and audit log are checked"
show "$url/v1/health"
api "$url/v1/health"

say "An application asks for a data key under the KEK demo-data: the plaintext key to use, the ciphertext to store"
show "-H 'Content-Type: application/json' -d '{\"context\":{\"app\":\"demo\"}}' $url/v1/keks/demo-data/datakey"
api -H 'Content-Type: application/json' -d '{"context":{"app":"demo"}}' "$url/v1/keks/demo-data/datakey" | tee "$api_dir/datakey.json"
data_key=$(field plaintext < "$api_dir/datakey.json")
wrapped=$(field ciphertext < "$api_dir/datakey.json")

say "Later it sends the stored ciphertext back, with the same context, and gets the same data key"
show "-H 'Content-Type: application/json' -d '{\"ciphertext\":\"$wrapped\",\"context\":{\"app\":\"demo\"}}' $url/v1/keks/demo-data/decrypt"
api -H 'Content-Type: application/json' -d "{\"ciphertext\":\"$wrapped\",\"context\":{\"app\":\"demo\"}}" \
  "$url/v1/keks/demo-data/decrypt" | tee "$api_dir/decrypt.json"
if [ "$(field plaintext < "$api_dir/decrypt.json")" = "$data_key" ]; then
  echo "(the same data key, base64)"
else
  echo "the decrypted data key differs from the one generated" >&2
  exit 1
fi

say "A certificate from a CSR over the API: openssl makes the key and the CSR, the CA demo-issuing signs in the token"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$api_dir/api.key" \
  -subj /CN=api.demo.test -addext subjectAltName=DNS:api.demo.test -out "$api_dir/api.csr" 2>/dev/null
printf '{"profile":"server","csr":"%s","days":30}' "$(json_text "$api_dir/api.csr")" > "$api_dir/issue-request.json"
show "-H 'Content-Type: application/json' --data-binary @issue-request.json $url/v1/pki/demo-issuing/issue"
api -H 'Content-Type: application/json' --data-binary @"$api_dir/issue-request.json" \
  "$url/v1/pki/demo-issuing/issue" > "$api_dir/issue.json"
field certificate < "$api_dir/issue.json" | sed 's/\\n/\n/g' | sed '/^$/d' > "$api_dir/api.pem"
field chain < "$api_dir/issue.json" | sed 's/\\n/\n/g' | sed '/^$/d' > "$api_dir/api-chain.pem"
echo "serial $(field serial < "$api_dir/issue.json"), subject $(field subject < "$api_dir/issue.json"), until $(field not_after < "$api_dir/issue.json")"
run openssl verify -x509_strict -CAfile "$work/root.pem" -untrusted "$api_dir/api-chain.pem" "$api_dir/api.pem"

say "An SSH user certificate over the API, for Bob's key, from the SSH CA demo-users"
ssh-keygen -q -t ed25519 -N "" -C bob@laptop -f "$api_dir/bob"
printf '{"public_key":"%s","type":"user","key_id":"bob@laptop","principals":["bob"],"validity":"1h"}' \
  "$(cat "$api_dir/bob.pub")" > "$api_dir/sign-request.json"
show "-H 'Content-Type: application/json' --data-binary @sign-request.json $url/v1/ssh/demo-users/sign"
api -H 'Content-Type: application/json' --data-binary @"$api_dir/sign-request.json" \
  "$url/v1/ssh/demo-users/sign" > "$api_dir/sign.json"
field certificate < "$api_dir/sign.json" > "$api_dir/bob-cert.pub"
echo "serial $(field serial < "$api_dir/sign.json") (a string: SSH serials are 64-bit)"
ssh-keygen -L -f "$api_dir/bob-cert.pub" | sed -n '1,9p'

say "A second client, 'mallory' (its certificate from the dev CA, issued over the API): the policy names only 'admin'"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$api_dir/mallory-key.pem" \
  -subj /CN=mallory -addext subjectAltName=email:mallory@localhost -out "$api_dir/mallory.csr" 2>/dev/null
printf '{"profile":"client","csr":"%s"}' "$(json_text "$api_dir/mallory.csr")" > "$api_dir/mallory-request.json"
api -H 'Content-Type: application/json' --data-binary @"$api_dir/mallory-request.json" \
  "$url/v1/pki/dev/issue" > "$api_dir/mallory.json"
field certificate < "$api_dir/mallory.json" | sed 's/\\n/\n/g' | sed '/^$/d' > "$api_dir/mallory.pem"
printf '$ curl --cacert ca.pem --cert mallory.pem --key mallory-key.pem -H %s -d %s %s\n' \
  "'Content-Type: application/json'" "'{\"context\":{\"app\":\"demo\"}}'" "$url/v1/keks/demo-data/datakey"
status=$(curl -sS -o "$api_dir/denied.json" -w '%{http_code}' --cacert "$dev/ca.pem" --cert "$api_dir/mallory.pem" \
  --key "$api_dir/mallory-key.pem" -H 'Content-Type: application/json' -d '{"context":{"app":"demo"}}' \
  "$url/v1/keks/demo-data/datakey")
echo "HTTP $status"
cat "$api_dir/denied.json"
[ "$status" = 403 ] || { echo "expected 403 for mallory" >&2; exit 1; }
echo "(denied, and the answer names only the operation and the resource)"

say "What the service counted (Prometheus text at /metrics)"
show "$url/metrics"
api "$url/metrics" | grep '^keyhold_requests_total'

say "SIGTERM: the service stops accepting, finishes what is in flight, signs a last audit checkpoint and exits 0"
printf '$ kill -TERM %s; wait %s\n' "$serve_pid" "$serve_pid"
kill -TERM "$serve_pid"
serve_status=0
wait "$serve_pid" || serve_status=$?
serve_pid=""
tail -n +2 "$serve_out"
echo "(exit status $serve_status)"
[ "$serve_status" = 0 ]

say "The audit log: one hash-chained record per request, checkpoints signed by a key in the token"
echo "mallory's refused request, as recorded:"
grep '"outcome":"denied"' "$dev/audit.log"
run keyhold audit verify

say "Renewal from cron: keyhold renew keeps the certificates of a renewal file fresh (here on the CA host: local mode)"
renew_dir="$work/renew"
mkdir -p "$renew_dir"
cat > "$renew_dir/renew.toml" <<TOML
[[certificate]]
name = "web"
kind = "x509"
ca = "demo-issuing"
profile = "server"
names = ["web.demo.test"]
cert = "$renew_dir/web.pem"
chain = "$renew_dir/web-chain.pem"
key = "$renew_dir/web-key.pem"
TOML
run keyhold renew --renew-config "$renew_dir/renew.toml" --dry-run
run keyhold renew --renew-config "$renew_dir/renew.toml"
echo "Run again, it is not due; --force renews now and keeps the previous files as *.prev:"
run keyhold renew --renew-config "$renew_dir/renew.toml" --dry-run
run keyhold renew --renew-config "$renew_dir/renew.toml" --force web
run openssl verify -CAfile "$work/root.pem" -untrusted "$renew_dir/web-chain.pem" "$renew_dir/web.pem"
run ls "$renew_dir"

say "Maintenance from cron: fresh CRLs and KRLs when due, KEK rotation, expiry reports (twice: the second run has nothing to do)"
run keyhold maintain
run keyhold maintain

cat <<NEXT

== Try next
  export KEYHOLD_CONFIG=$KEYHOLD_CONFIG
  alias keyhold=$keyhold
  keyhold key create my-signing-key --type ed25519
  keyhold key public my-signing-key --format openssh
  keyhold --json key show my-signing-key
  keyhold key destroy my-signing-key --yes
  keyhold ca issue --ca demo-issuing --profile server --generate-key --key-type ec-p256 --cn api.demo.test
  keyhold ca rotate demo-issuing && keyhold ca show demo-issuing
  keyhold ssh keygen deploy --type ecdsa-p256     # an SSH key in the token, for ssh -I (docs/ssh.md)
  keyhold rewrap --context app=demo --in $env_dir/data.key.kh1   # the data key under the KEK's version 2 (docs/envelope.md)
  keyhold serve &        # the service on 127.0.0.1:8443; then, from $dev:
  curl --cacert ca.pem --cert admin.pem --key admin-key.pem https://localhost:8443/v1/keks/demo-data   # (docs/api.md)
  scripts/test.sh        # every test, against real SoftHSM tokens and peers
Docs: docs/cli.md, docs/api.md, docs/operations.md, docs/policy.md, docs/pki.md, docs/ssh.md, docs/envelope.md, docs/configuration.md, docs/security-model.md, docs/architecture.md
NEXT
