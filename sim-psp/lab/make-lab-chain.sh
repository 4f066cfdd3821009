#!/usr/bin/env bash
# Generates the simulated PSP's lab certificate chain, shaped like AMD's (see
# measurements/src/verify.rs for what the verifier checks):
#   ARK  RSA-4096, self-signed, RSASSA-PSS/SHA-384 (MGF1 SHA-384, salt 48)
#   ASK  RSA-4096, signed by the ARK, RSASSA-PSS/SHA-384
#   VCEK ECDSA P-384, signed by the ASK, RSASSA-PSS/SHA-384, with AMD's VCEK extensions:
#        1.3.6.1.4.1.3704.1.2 productName (IA5String "Lab"),
#        1.3.6.1.4.1.3704.1.3.{1,2,3,8} blSPL/teeSPL/snpSPL/ucodeSPL (INTEGER),
#        1.3.6.1.4.1.3704.1.4 hwID (the raw 64-byte chip id = sev_snp::lab::CHIP_ID).
# Writes ark.pem, ask.pem, vcek.der, vcek-key.pem into the directory of this script (or $1).
# The ARK and ASK private keys exist only in a temporary directory and are deleted: the
# chain cannot be extended, only the VCEK key (public by design) signs.
#
# The TCB values must equal sim-psp/src/lib.rs's LAB_TCB; the chip id sev_snp::lab::CHIP_ID
# ("omega-lab-chip" padded with zeros). The crate's tests fail if either drifts.
set -euo pipefail

out="${1:-$(cd "$(dirname "$0")" && pwd)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

BL=3 TEE=0 SNP=20 UCODE=209
chip_hex="$(printf 'omega-lab-chip' | od -An -tx1 | tr -d ' \n')"
while [ "${#chip_hex}" -lt 128 ]; do chip_hex="${chip_hex}00"; done

pss=(-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384)
days=36500

cat >"$tmp/ext.cnf" <<CNF
[req]
distinguished_name = dn
[dn]
[ark]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ask]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[vcek]
1.3.6.1.4.1.3704.1.1 = ASN1:INTEGER:1
1.3.6.1.4.1.3704.1.2 = ASN1:IA5STRING:Lab
1.3.6.1.4.1.3704.1.3.1 = ASN1:INTEGER:$BL
1.3.6.1.4.1.3704.1.3.2 = ASN1:INTEGER:$TEE
1.3.6.1.4.1.3704.1.3.3 = ASN1:INTEGER:$SNP
1.3.6.1.4.1.3704.1.3.4 = ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.5 = ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.6 = ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.7 = ASN1:INTEGER:0
1.3.6.1.4.1.3704.1.3.8 = ASN1:INTEGER:$UCODE
1.3.6.1.4.1.3704.1.4 = DER:$chip_hex
CNF

subj='/OU=Omega lab (NOT AMD)/C=US/L=Nowhere/ST=NA/O=Omega simulated PSP'

openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$tmp/ark-key.pem"
openssl req -new -x509 -key "$tmp/ark-key.pem" "${pss[@]}" -days "$days" -set_serial 1 \
    -subj "$subj/CN=ARK-Lab" -config "$tmp/ext.cnf" -extensions ark \
    -out "$out/ark.pem"

openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$tmp/ask-key.pem"
openssl req -new -key "$tmp/ask-key.pem" -subj "$subj/CN=SEV-Lab" -config "$tmp/ext.cnf" -out "$tmp/ask.csr"
openssl x509 -req -in "$tmp/ask.csr" -CA "$out/ark.pem" -CAkey "$tmp/ark-key.pem" \
    "${pss[@]}" -days "$days" -set_serial 2 -extfile "$tmp/ext.cnf" -extensions ask \
    -out "$out/ask.pem"

openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$out/vcek-key.pem"
chmod 0644 "$out/vcek-key.pem" # public by design (README.md)
openssl req -new -key "$out/vcek-key.pem" -subj "$subj/CN=SEV-VCEK" -config "$tmp/ext.cnf" -out "$tmp/vcek.csr"
openssl x509 -req -in "$tmp/vcek.csr" -CA "$out/ask.pem" -CAkey "$tmp/ask-key.pem" \
    "${pss[@]}" -days "$days" -set_serial 3 -extfile "$tmp/ext.cnf" -extensions vcek \
    -outform DER -out "$out/vcek.der"

openssl verify -CAfile "$out/ark.pem" "$out/ask.pem" >/dev/null
echo "lab chain written to $out (ARK/ASK private keys discarded)"
