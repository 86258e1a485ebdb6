#!/usr/bin/env bash
# The Debian package and what it carries, checked the way a user meets them. Builds kvreconcile
# again in a scratch release tree (no sanitizers: a package of the ASan test build would depend on
# libasan), makes the .deb with cpack, then:
#   - control data: name, version, dependencies from dpkg-shlibdeps (libcurl4, libjansson4,
#     libssl3, libyaml-0-2, no sanitizer runtime), maintainer scripts that parse
#   - contents: binary, man page, completions, systemd unit, sysusers file, docs and examples,
#     owned by root, and nothing else (no azsim, no test binaries)
#   - the extracted binary: version, --help of every command, validate of every packaged example
#     and a broken file reported as FILE:LINE:COL
#   - the man page: formats without a groff or man warning, names the version, and every option,
#     command and environment variable the program has; the bash completion knows every option
#     too and completes commands, -o and --log-format values and directories when called
#   - the systemd unit: systemd-analyze verify, its exposure score, and the sysusers file applied
#     to a scratch root (skipped with a message when systemd-analyze is missing)
#   - .pre-commit-hooks.yaml, the GitHub action and the Azure Pipelines template parse as YAML;
#     the hook's entry is run as pre-commit would; with AZSIM given, the action's script runs
#     against azsim (plan with changes pending is not a failure; the summary, outputs and the PR
#     comment through a stand-in gh; a broken file becomes an annotation and fails)
#   - the Dockerfile copies only paths that exist and that its .dockerignore lets in
# usage: test_package.sh SOURCE_DIR [AZSIM]
set -euo pipefail
src=$(realpath "$1")
azsim=${2:+$(realpath "$2")}
. "$src/tests/e2e/lib.sh"
e2e_init
unset ASAN_OPTIONS UBSAN_OPTIONS # the scratch build has no sanitizer; nothing here needs them
jobs=$(nproc 2>/dev/null || echo 2)
has() { command -v "$1" >/dev/null 2>&1; }
ok() { if "$@" >/dev/null 2>&1; then echo 0; else echo 1; fi; } # a command's success, as a status
fail_now() { check "$1" 1; e2e_finish || exit 1; }

for tool in cpack dpkg-deb dpkg-shlibdeps file groff man gzip /usr/bin/python3; do
    has "$tool" || { echo "missing $tool (scripts/deps.sh installs it)"; fail_now "tools present"; }
done

# ---- the package ----------------------------------------------------------------------------
t0=$(date +%s.%N)
if ! { cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKVR_TESTS=OFF \
    -DKVR_SANITIZE=OFF -DKVR_FUZZ=OFF -DKVR_BENCH=OFF &&
    cmake --build "$work/build" -j"$jobs"; } >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log"
    fail_now "release build"
fi
t1=$(date +%s.%N)
if ! (cd "$work/build" && cpack -G DEB) >"$work/cpack.log" 2>&1; then
    cat "$work/cpack.log"
    fail_now "cpack -G DEB"
fi
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "     release build %.1fs, cpack %.1fs\n", b - a, c - b }'
debs=("$work"/build/kvreconcile_*.deb)
check "cpack made one package: ${debs[*]##*/}" "$([[ ${#debs[@]} == 1 && -f ${debs[0]} ]]; echo $?)"
deb=${debs[0]}
version=$(sed -n 's/^project(kvreconcile VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")

field() { dpkg-deb -f "$deb" "$1"; }
check "Package: kvreconcile" "$([[ $(field Package) == kvreconcile ]]; echo $?)"
check "Version: $version" "$([[ -n $version && $(field Version) == "$version" ]]; echo $?)"
check "Architecture: $(dpkg --print-architecture)" "$([[ $(field Architecture) == $(dpkg --print-architecture) ]]; echo $?)"
depends=$(field Depends)
echo "     Depends: $depends"
for dep in libc6 libcurl4 libjansson4 libssl3 libyaml-0-2 ca-certificates; do
    check "depends on $dep" "$(grep -Eq "(^|, )$dep( |,|$)" <<<"$depends"; echo $?)"
done
check "no sanitizer runtime among the dependencies" "$(grep -Eq 'libasan|libubsan' <<<"$depends" && echo 1 || echo 0)"
dpkg-deb -e "$deb" "$work/control"
for s in postinst prerm postrm; do
    check "maintainer script $s: executable, parses" \
        "$([[ -x $work/control/$s ]] && sh -n "$work/control/$s"; echo $?)"
done

dpkg-deb -c "$deb" >"$work/contents"
paths=$(awk '{print $6}' "$work/contents" | sed 's#^\./#/#; s#/$##')
for p in /usr/bin/kvreconcile /usr/share/man/man1/kvreconcile.1.gz \
    /usr/share/bash-completion/completions/kvreconcile \
    /usr/share/zsh/vendor-completions/_kvreconcile \
    /usr/lib/systemd/system/kvreconcile-watch.service /usr/lib/sysusers.d/kvreconcile.conf \
    /usr/share/doc/kvreconcile/README.md /usr/share/doc/kvreconcile/desired-state.md \
    /usr/share/doc/kvreconcile/kvreconcile.env.example \
    /usr/share/doc/kvreconcile/examples/rotate-key/after; do
    check "contains $p" "$(grep -qx -- "$p" <<<"$paths"; echo $?)"
done
check "no azsim, test or bench binary" "$(grep -Eq '/(azsim|test_[a-z_]*|bench_[a-z_]*|azure_e2e|fuzz_[a-z_]*)$' <<<"$paths" && echo 1 || echo 0)"
check "nothing outside /usr" "$(grep -Ev '^(/usr(/.*)?|)$' <<<"$paths" | grep -q . && echo 1 || echo 0)"
check "one executable, the binary" "$([[ $(awk '$1 ~ /^-..x/ {print $6}' "$work/contents") == ./usr/bin/kvreconcile ]]; echo $?)"
check "everything owned by root/root" "$(awk '$2 != "root/root"' "$work/contents" | grep -q . && echo 1 || echo 0)"

# ---- the installed binary -----------------------------------------------------------------
root="$work/root"
dpkg-deb -x "$deb" "$root"
kvr="$root/usr/bin/kvreconcile"
check "kvreconcile version prints $version" "$([[ $("$kvr" version) == "kvreconcile $version" ]]; echo $?)"
check "stripped, no sanitizer linked" \
    "$(file "$kvr" | grep -q 'stripped' && ! file "$kvr" | grep -q 'not stripped' && ! ldd "$kvr" | grep -Eq 'asan|ubsan'; echo $?)"
"$kvr" --help >"$work/help.txt"
check "kvreconcile --help lists the commands" \
    "$(for c in validate plan apply watch export version help; do grep -q "^  $c " "$work/help.txt" || exit 1; done; echo 0)"
commands=(validate plan apply watch export)
for c in "${commands[@]}"; do
    check "kvreconcile $c --help" "$("$kvr" "$c" --help >"$work/help-$c.txt" 2>&1; echo $?)"
done
docroot="$root/usr/share/doc/kvreconcile/examples"
n=0
for state in "$docroot"/*/before "$docroot"/*/after; do
    [ -d "$state" ] || continue
    n=$((n + 1))
    rc=0
    out=$("$kvr" validate -f "$state" 2>&1) || rc=$?
    check "validate ${state#"$docroot"/}: $out" "$rc"
done
check "the package carries examples ($n states)" "$([[ $n -ge 2 ]]; echo $?)"
mkdir -p "$work/broken"
printf 'apiVersion: kvreconcile/v1\nvaults: [\n' >"$work/broken/bad.yaml"
set +e
"$kvr" validate -f "$work/broken" 2>"$work/broken.err"
rc=$?
set -e
check "validate of a broken file exits 1, FILE:LINE:COL on stderr" \
    "$([[ $rc == 1 ]] && grep -q 'bad.yaml:3:1: error:' "$work/broken.err"; echo $?)"

# ---- the man page ---------------------------------------------------------------------------
man_gz="$root/usr/share/man/man1/kvreconcile.1.gz"
check "packaged man page is docs/kvreconcile.1" "$(zcat "$man_gz" | cmp -s - "$src/docs/kvreconcile.1"; echo $?)"
warn=$(zcat "$man_gz" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1)
check "groff -man -ww: no warning${warn:+: $warn}" "$([[ -z $warn ]]; echo $?)"
warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$man_gz" 2>&1 >"$work/man.txt" || echo "man failed")
check "man -l: no warning${warn:+: $warn}" "$([[ -z $warn && -s $work/man.txt ]]; echo $?)"
check "man page names version $version" "$(grep -q "^\.TH KVRECONCILE 1 .*\"kvreconcile $version\"" "$src/docs/kvreconcile.1"; echo $?)"
plain=$(sed 's/\\-/-/g' "$src/docs/kvreconcile.1")
options=$(cat "$work"/help-*.txt "$work/help.txt" | grep -oE -- '(^|[ ,])--?[a-z][a-z-]*' | sed 's/^[ ,]*//' | sort -u)
missing=
for o in $options; do grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" <<<"$plain" || missing+=" $o"; done
check "man page has every option of --help ($(wc -w <<<"$options")):${missing:- all}" "$([[ -z $missing ]]; echo $?)"
missing=
for c in "${commands[@]}" version help; do grep -q "^\.B[IR]* \"*$c" <<<"$plain" || missing+=" $c"; done
check "man page has every command:${missing:- all}" "$([[ -z $missing ]]; echo $?)"
envs=$(grep -rhoE '(getenv|env)\("[A-Z_]+"\)' "$src/reconciler" | sed -E 's/.*\("([A-Z_]+)"\)/\1/' | sort -u)
missing=
for v in $envs; do grep -q "$v" <<<"$plain" || missing+=" $v"; done
check "man page has every environment variable the code reads ($(wc -w <<<"$envs")):${missing:- all}" \
    "$([[ -n $envs && -z $missing ]]; echo $?)"
missing=
for s in 0 1 2 3; do grep -q "^\.B $s\$" <<<"$plain" || missing+=" $s"; done
check "man page has every exit status:${missing:- all}" "$([[ -z $missing ]]; echo $?)"

# ---- shell completion -----------------------------------------------------------------------
comp="$root/usr/share/bash-completion/completions/kvreconcile"
check "bash -n completion" "$(ok bash -n "$comp")"
missing=
for o in $options; do grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" "$comp" || missing+=" $o"; done
check "bash completion has every option:${missing:- all}" "$([[ -z $missing ]]; echo $?)"
mkdir -p "$work/cwd/estate" "$work/cwd/other dir"
touch "$work/cwd/a.yaml" "$work/cwd/b.yml" "$work/cwd/c.txt"
complete_line() { # words... (the last is the one being completed) -> replies, one per line
    (cd "$work/cwd" && bash --norc --noprofile -c '
        . "$0"
        COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _kvreconcile kvreconcile "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}" | LC_ALL=C sort' "$comp" "$@")
}
expect_completion() { # expected (space-separated, sorted) words...
    local want=$1 got
    shift
    got=$(complete_line "$@" | tr '\n' ' ' | sed 's/ $//')
    check "complete '$*': $got" "$([[ $got == "$want" ]]; echo $?)"
}
expect_completion "apply export help plan validate version watch" kvreconcile ""
expect_completion "plan" kvreconcile pl
expect_completion "json markdown text" kvreconcile plan -o ""
expect_completion "json" kvreconcile plan --output = j
expect_completion "--output=markdown" kvreconcile plan --output=m
expect_completion "json text" kvreconcile apply --log-format ""
expect_completion "--detailed-exitcode" kvreconcile plan --d
expect_completion "a.yaml b.yml estate other dir" kvreconcile validate -f ""
expect_completion "a.yaml b.yml estate other dir" kvreconcile plan -f a.yaml ""
expect_completion "estate other dir" kvreconcile watch --interval 5m ""
expect_completion "" kvreconcile watch estate ""
expect_completion "estate other dir" kvreconcile export -o ""
expect_completion "--profiles" kvreconcile export --pro
expect_completion "apply export help plan validate version watch" kvreconcile help ""
if has zsh; then
    check "zsh -n completion" "$(ok zsh -n "$root/usr/share/zsh/vendor-completions/_kvreconcile")"
else
    echo "skip zsh completion (zsh not installed)"
fi

# ---- systemd --------------------------------------------------------------------------------
unit="$root/usr/lib/systemd/system/kvreconcile-watch.service"
check "the unit runs 'kvreconcile watch' as user kvreconcile from /etc/kvreconcile/env" \
    "$(grep -q '^ExecStart=/usr/bin/kvreconcile watch ' "$unit" && grep -q '^User=kvreconcile$' "$unit" &&
        grep -q '^EnvironmentFile=/etc/kvreconcile/env$' "$unit"; echo $?)"
# every option the unit passes exists
missing=
for o in $(sed -n 's/^ExecStart=//p' "$unit" | grep -oE -- '--[a-z-]+'); do
    grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" "$work/help-watch.txt" || missing+=" $o"
done
check "the unit's options are watch's:${missing:- all}" "$([[ -z $missing ]]; echo $?)"
if has systemd-analyze; then
    # verify needs the binary where ExecStart says: point it at the extracted one
    mkdir -p "$work/unit"
    sed "s#/usr/bin/kvreconcile#$kvr#" "$unit" >"$work/unit/kvreconcile-watch.service"
    rc=0
    out=$(cd "$work/unit" && MANPATH="$root/usr/share/man" systemd-analyze verify kvreconcile-watch.service 2>&1) || rc=$?
    check "systemd-analyze verify${out:+: $out}" "$([[ $rc == 0 && -z $out ]]; echo $?)"
    score=$(systemd-analyze security --offline=yes "$work/unit/kvreconcile-watch.service" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    check "exposure level ${score:-?} at most 2.0 (systemd-analyze security)" \
        "$(ok systemd-analyze security --offline=yes --threshold=20 "$work/unit/kvreconcile-watch.service")"
    if has systemd-sysusers; then
        mkdir -p "$work/sysroot/etc"
        systemd-sysusers --root="$work/sysroot" "$root/usr/lib/sysusers.d/kvreconcile.conf" >/dev/null 2>&1 || true
        check "sysusers file makes user kvreconcile (in a scratch root)" \
            "$(grep -q '^kvreconcile:x:[0-9]*:[0-9]*:.*:/var/lib/kvreconcile:/usr/sbin/nologin$' "$work/sysroot/etc/passwd"; echo $?)"
    fi
else
    echo "skip systemd-analyze verify (systemd-analyze not installed)"
fi

# ---- CI integrations ------------------------------------------------------------------------
yaml_check() { # file python-expression-over-d
    /usr/bin/python3 -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>&1
}
hooks="$src/.pre-commit-hooks.yaml"
check ".pre-commit-hooks.yaml: kvreconcile-validate, language system" \
    "$(ok yaml_check "$hooks" '[h for h in d if h["id"] == "kvreconcile-validate" and h["language"] == "system" and h["entry"].startswith("kvreconcile validate")]')"
entry=$(/usr/bin/python3 -c 'import sys, yaml; print([h for h in yaml.safe_load(open(sys.argv[1])) if h["id"] == "kvreconcile-validate"][0]["entry"])' "$hooks")
read -ra entry_words <<<"$entry"
check "the hook as pre-commit runs it: a valid estate passes" \
    "$(cd "$src/examples" && PATH="$root/usr/bin:$PATH" ok "${entry_words[@]}" rotate-key/after)"
check "the hook as pre-commit runs it: a broken file fails" \
    "$(PATH="$root/usr/bin:$PATH" "${entry_words[@]}" "$work/broken" >/dev/null 2>&1 && echo 1 || echo 0)"
action="$src/packaging/github-action/action.yml"
check "action.yml: composite, inputs paths, working-directory, comment" \
    "$(ok yaml_check "$action" 'd["runs"]["using"] == "composite" and {"paths", "working-directory", "comment"} <= set(d["inputs"]) and d["inputs"]["paths"]["required"]')"
check "action.yml runs plan.sh, which exists" \
    "$(yaml_check "$action" '"plan.sh" in d["runs"]["steps"][0]["run"]' >/dev/null && [[ -f $src/packaging/github-action/plan.sh ]] && bash -n "$src/packaging/github-action/plan.sh"; echo $?)"
check "azure-pipelines template parses, has a paths parameter" \
    "$(ok yaml_check "$src/packaging/azure-pipelines/kvreconcile-plan.yml" '"paths" in [p["name"] for p in d["parameters"]]')"

if [ -n "$azsim" ]; then
    azsim_start "$azsim" --subscription 3f1c9a7e-2b4d-4e8f-9a61-7c5d2e0b8f43 --rbac-delay 0
    mkdir -p "$work/gh/bin" "$work/gh/tmp"
    cat >"$work/gh/bin/gh" <<'EOF'
#!/bin/sh
# stands in for the GitHub CLI: records its arguments and the body it would post
echo "$*" >>"$GH_LOG"
while [ $# -gt 0 ]; do [ "$1" = --body-file ] && cp "$2" "$GH_LOG.body"; shift; done
EOF
    chmod +x "$work/gh/bin/gh"
    echo '{"pull_request": {"number": 42}}' >"$work/gh/event.json"
    run_action() { # paths -> exit status; outputs in $work/gh
        : >"$work/gh/summary"
        : >"$work/gh/output"
        (cd "$src/examples" &&
            PATH="$work/gh/bin:$root/usr/bin:$PATH" RUNNER_TEMP="$work/gh/tmp" \
                GITHUB_STEP_SUMMARY="$work/gh/summary" GITHUB_OUTPUT="$work/gh/output" \
                GITHUB_EVENT_PATH="$work/gh/event.json" GITHUB_REPOSITORY=owner/estate \
                GH_LOG="$work/gh/log" KVR_ACTION_PATHS="$1" KVR_ACTION_COMMENT=true \
                bash "$src/packaging/github-action/plan.sh" >"$work/gh/stdout" 2>"$work/gh/stderr")
    }
    set +e
    run_action "rotate-key/before"
    rc=$?
    set -e
    check "action: changes pending is not a failure (exit $rc)" "$([[ $rc == 0 ]]; echo $?)"
    check "action: outputs exitcode=2, changes=true" \
        "$(grep -qx 'exitcode=2' "$work/gh/output" && grep -qx 'changes=true' "$work/gh/output"; echo $?)"
    check "action: the plan is in the step summary" \
        "$(grep -q '^### kvreconcile plan' "$work/gh/summary" && [[ $(wc -l <"$work/gh/summary") -gt 5 ]]; echo $?)"
    check "action: posted as a comment on PR 42" \
        "$(grep -q '^pr comment 42 --repo owner/estate --body-file ' "$work/gh/log" && cmp -s "$work/gh/log.body" "$work/gh/summary"; echo $?)"
    set +e
    run_action "$work/broken"
    rc=$?
    set -e
    check "action: a broken estate fails (exit $rc)" "$([[ $rc == 1 ]]; echo $?)"
    check "action: and becomes an annotation" \
        "$(grep -q "^::error file=$work/broken/bad.yaml,line=3,col=1::" "$work/gh/stdout"; echo $?)"
else
    echo "skip the action against azsim (no azsim given)"
fi

# ---- Dockerfile -----------------------------------------------------------------------------
dockerfile="$src/packaging/docker/Dockerfile"
missing=
for p in $(sed -n 's/^COPY \([^-].*\) [^ ]*$/\1/p' "$dockerfile"); do
    [ -e "$src/$p" ] || missing+=" $p"
    grep -qx "!$p/\?" "$dockerfile.dockerignore" || missing+=" $p(ignored)"
done
check "Dockerfile copies only what exists and is not ignored:${missing:- ok}" "$([[ -z $missing ]]; echo $?)"
check "Dockerfile: release, no tests, non-root, ENTRYPOINT kvreconcile" \
    "$(grep -q -- '-DCMAKE_BUILD_TYPE=Release -DKVR_TESTS=OFF -DKVR_SANITIZE=OFF' "$dockerfile" &&
        grep -q '^USER 10001' "$dockerfile" && grep -q '^ENTRYPOINT \["kvreconcile"\]' "$dockerfile"; echo $?)"

e2e_finish
