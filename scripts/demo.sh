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
  scripts/test.sh        # every test, against real SoftHSM tokens and peers
Docs: docs/cli.md, docs/pki.md, docs/ssh.md, docs/envelope.md, docs/configuration.md, docs/security-model.md, docs/architecture.md
NEXT
