#!/bin/sh
# 91adeOnline cmdline hook (stand-in written from docs/ade-internals.md §4.1): unless rd.ade=0 or
# rd_NO_ADE, write a udev rule that, for the partition whose GPT unique GUID matches
# rd.luks.ade.partuuid, queues crypt-run-generator-ade in dracut's initqueue. Without
# rd.luks.ade.partuuid the glob is "**" and matches every partition, as ADE's does.

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh

if ! getargbool 1 rd.ade -n rd_NO_ADE; then
    info "ADE: rd.ade=0: not unlocking osencrypt"
    echo "ADE: rd.ade=0: osencrypt unlock disabled" > /dev/kmsg
    rm -f -- /etc/udev/rules.d/70-luks-ade.rules
else
    partuuid=$(getarg rd.luks.ade.partuuid)
    bootuuid=$(getarg rd.luks.ade.bootuuid)
    echo "ADE: parse-crypt-ade: rule for partuuid '${partuuid}' boot uuid '${bootuuid}'" > /dev/kmsg
    {
        printf -- 'SUBSYSTEM!="block", GOTO="luks_ade_end"\n'
        printf -- 'ACTION!="add|change", GOTO="luks_ade_end"\n'
        printf -- 'ENV{ID_PART_ENTRY_UUID}=="*%s*", ' "$partuuid"
        printf -- 'RUN+="%s --unique --settled --onetime ' "$(command -v initqueue)"
        printf -- '--name crypt-run-generator-ade-%%k %s ' "$(command -v crypt-run-generator-ade)"
        # shellcheck disable=SC2016
        printf -- '$env{DEVNAME} osencrypt %s"\n' "$bootuuid"
        printf -- 'LABEL="luks_ade_end"\n'
    } > /etc/udev/rules.d/70-luks-ade.rules
fi
