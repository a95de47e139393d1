#!/bin/sh
# Regenerate the development CA and server certificate in this directory.
# Tests and examples only: the keys are public, never use them for real mail.
set -eu
cd "$(dirname "$0")"
DAYS=7305   # 20 years
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. The CA: a self-signed EC P-256 key and certificate.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca-key.pem"
openssl req -x509 -new -key "$tmp/ca-key.pem" -sha256 -days "$DAYS" \
  -subj "/CN=relayguard dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out dev-ca.pem

# 2. The server key (PKCS#8 PEM, "BEGIN PRIVATE KEY") and a CSR for it.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dev-key.pem
openssl req -new -key dev-key.pem -subj "/CN=localhost" -out "$tmp/leaf.csr"

# 3. The leaf, signed by the CA, valid for localhost, 127.0.0.1 and ::1.
cat > "$tmp/leaf.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in "$tmp/leaf.csr" -CA dev-ca.pem -CAkey "$tmp/ca-key.pem" \
  -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$DAYS" \
  -extfile "$tmp/leaf.ext" -out "$tmp/leaf.pem"

# 4. The chain a server presents: leaf first, then the CA.
cat "$tmp/leaf.pem" dev-ca.pem > dev-cert.pem

# The key is public anyway; readable so tests run as any user.
chmod 644 dev-key.pem
openssl verify -CAfile dev-ca.pem "$tmp/leaf.pem"
