#!/bin/sh
# A test PKI made by openssl, not by upecho: a root CA, an intermediate,
# server leaves (EC P-256 with its key in PKCS#8 and SEC1; RSA with PKCS#1)
# for localhost/127.0.0.1/::1, and a client leaf. Run in an empty directory.
set -eu
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca_ext='basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign'
server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'
printf '%s\n' "$ca_ext" > ca.ext
printf '%s\n' "$server_ext" > server.ext
printf '%s\n' "$client_ext" > client.ext
ec ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 365 -subj "/CN=upecho test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
sign() { # csr-key subject out issuer-cert issuer-key ext
    openssl req -new -key "$1" -subj "$2" -out "$3.csr"
    openssl x509 -req -in "$3.csr" -CA "$4" -CAkey "$5" -set_serial "0x$(openssl rand -hex 8)" \
        -days 365 -extfile "$6" -out "$3" 2>/dev/null
}
ec intermediate.key
sign intermediate.key "/CN=upecho test intermediate" intermediate.pem ca.pem ca.key ca.ext
ec server.key
sign server.key "/CN=localhost" server.pem intermediate.pem intermediate.key server.ext
cat server.pem intermediate.pem > chain.pem
openssl ec -in server.key -out server.sec1.key 2>/dev/null
openssl genrsa -traditional -out rsa.key 2048 2>/dev/null
sign rsa.key "/CN=localhost RSA" rsa.pem intermediate.pem intermediate.key server.ext
cat rsa.pem intermediate.pem > rsa-chain.pem
ec client.key
sign client.key "/CN=upecho test client" client.pem ca.pem ca.key client.ext
# Another server identity, from another CA: what a reload swaps in.
ec other-ca.key
openssl req -x509 -new -key other-ca.key -out other-ca.pem -days 365 -subj "/CN=upecho other CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ec other.key
sign other.key "/CN=localhost other" other.pem other-ca.pem other-ca.key server.ext
rm -f ./*.csr ./*.ext
