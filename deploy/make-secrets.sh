#!/bin/sh
# Writes the secrets docker-compose.yml mounts under /run/secrets, once: a file that exists is kept.
#   deploy/make-secrets.sh [DIR]      (DIR defaults to deploy/secrets beside this script)
# Each quanzu_* file is named after the setting it holds (QUANZU_SECRETS_DIR, README "Configuration").
# Needs only openssl. Keep DIR out of version control (deploy/secrets/.gitignore does) and back it up:
# losing quanzu_subject_key_secret unlinks future warnings from past ones.
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
umask 022 # the files are read inside the containers by their own (non-root) users; the directory guards them

write() { # NAME VALUE: writes DIR/NAME unless it exists
    if [ ! -e "$dir/$1" ]; then
        printf '%s\n' "$2" > "$dir/$1"
        echo "wrote $dir/$1"
    fi
}

write postgres_password "$(openssl rand -hex 24)"
write quanzu_database_url "postgresql://quanzu:$(cat "$dir/postgres_password")@postgres:5432/quanzu"
write quanzu_subject_key_secret "$(openssl rand -base64 48 | tr -d '\n')"
write grafana_admin_password "$(openssl rand -base64 18 | tr -d '\n')"
if [ ! -e "$dir/quanzu_token_private_key" ]; then
    openssl genpkey -algorithm ed25519 -out "$dir/quanzu_token_private_key"
    chmod 644 "$dir/quanzu_token_private_key"
    rm -f "$dir/quanzu_token_public_key"
    echo "wrote $dir/quanzu_token_private_key"
fi
if [ ! -e "$dir/quanzu_token_public_key" ]; then
    openssl pkey -in "$dir/quanzu_token_private_key" -pubout -out "$dir/quanzu_token_public_key"
    echo "wrote $dir/quanzu_token_public_key"
fi
