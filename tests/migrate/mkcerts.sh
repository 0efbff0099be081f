#!/bin/sh
# mkcerts.sh DIR - the certificates tests/migrate/test_chan.c needs, written into DIR.
# EC P-256 keys (fast to make); every leaf is signed with `openssl ca`, which can also
# backdate a certificate, so the expired one needs no fake clock.
#
#   ca.pem                        the CA both sides trust
#   server.pem/.key               for DNS:localhost, IP:127.0.0.1, IP:::1 (serverAuth)
#   client.pem/.key               clientAuth, for DNS:source.hv.test
#   ca2.pem, server2.*, client2.* an unrelated CA and its own server and client
#   expired.pem/.key              a server certificate that expired in 2021
#   wronghost.pem/.key            a server certificate for DNS:wrong.example only
set -eu

out=${1:?usage: mkcerts.sh DIR}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = test_ca

[test_ca]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no

[any]
commonName = supplied

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:source.hv.test

[wronghost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
EOF
: >"$work/index.txt"
echo 1000 >"$work/serial"

key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# ca NAME
ca() {
	key "$work/$1.key"
	openssl req -x509 -new -key "$work/$1.key" -subj "/CN=hv test $1" -days 3650 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/$1.pem"
}

# leaf NAME CA EXTENSIONS [openssl ca date options...]
leaf() {
	name=$1 signer=$2 ext=$3
	shift 3
	key "$out/$name.key"
	openssl req -new -key "$out/$name.key" -subj "/CN=hv test $name" -out "$work/$name.csr"
	openssl ca -batch -notext -config "$work/ca.cnf" -cert "$out/$signer.pem" \
		-keyfile "$work/$signer.key" -extensions "$ext" -in "$work/$name.csr" \
		-out "$out/$name.pem" "$@" 2>/dev/null
}

ca ca
ca ca2
leaf server ca server -days 3650
leaf client ca client -days 3650
leaf server2 ca2 server -days 3650
leaf client2 ca2 client -days 3650
leaf expired ca server -startdate 20200101000000Z -enddate 20210101000000Z
leaf wronghost ca wronghost -days 3650
