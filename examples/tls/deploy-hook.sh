#!/bin/sh
# An ACME deploy hook: after certbot (or acme.sh) renews a certificate, copy it next to lbgen.yaml and run
# `lbgen apply`, which checks the pair (expiry, key match), delivers it into the proxy container and
# reloads without dropping a request. ACME itself stays outside lbgen.
#
#   certbot:  certbot certonly --webroot -w /var/www/acme -d shop.example.com \
#               --deploy-hook /etc/lbgen/deploy-hook.sh
#   acme.sh:  acme.sh --install-cert -d shop.example.com --key-file /etc/lbgen/certs/shop.key \
#               --fullchain-file /etc/lbgen/certs/shop.pem --reloadcmd "lbgen -c /etc/lbgen/lbgen.yaml apply"
#
# certbot sets RENEWED_LINEAGE (e.g. /etc/letsencrypt/live/shop.example.com) for the hook.
set -eu
conf_dir=${LBGEN_DIR:-/etc/lbgen}
name=${LBGEN_CERT_NAME:-shop}
lineage=${RENEWED_LINEAGE:?run by certbot --deploy-hook, which sets RENEWED_LINEAGE}
umask 077
mkdir -p "$conf_dir/certs"
# Copy to temporary names, then rename: lbgen never reads a half-written pair.
cp "$lineage/fullchain.pem" "$conf_dir/certs/.$name.pem.new"
cp "$lineage/privkey.pem" "$conf_dir/certs/.$name.key.new"
mv -f "$conf_dir/certs/.$name.key.new" "$conf_dir/certs/$name.key"
mv -f "$conf_dir/certs/.$name.pem.new" "$conf_dir/certs/$name.pem"
# Exit 3 means the new pair was refused (expired, mismatched, unreadable); the old one is still served.
exec lbgen -c "$conf_dir/lbgen.yaml" apply
