# Cairn's boot script (U-Boot hush): RAUC-style A/B slot selection with boot counters (docs/updates.md).
#
# The boot state lives in two copies on the boot partition, each @STATE_SIZE@ bytes in U-Boot's environment format
# (CRC32 + name=value entries): @STATE_1@ and @STATE_2@. The valid copy with the higher BOOT_SEQ is current; a copy
# that is missing, of the wrong size or with a bad CRC is skipped. Every change is written to the OTHER copy (the
# older or the bad one), so a power cut mid-write leaves the current one intact. Numbers are hex (setexpr).
#
# For each slot in BOOT_ORDER whose BOOT_<x>_LEFT is above 0: decrement it, BOOT_SEQ + 1, write, then boot
# slot-<x>/@KERNEL@ and slot-<x>/initrd.img with the board's command line plus "cairn.slot=<a|b>" (and
# "cairn.trial=1" when the slot is BOOT_TRIAL). No slot with tries left: both get @TRIES@ again, write, reset,
# so a box always tries again and is never bricked.
#
# mkimage.py fills in the @...@ values from the board file ([boot], [kernel]) and makes boot.scr with mkimage.

setenv cairn_dev "@MEDIUM@:1"
setenv cairn_state_size @STATE_SIZE@
setenv cairn_vars "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT BOOT_SEQ BOOT_TRIAL"
# env import merges into the running environment: forget the last import before each one.
setenv cairn_forget "setenv BOOT_ORDER; setenv BOOT_A_LEFT; setenv BOOT_B_LEFT; setenv BOOT_SEQ; setenv BOOT_TRIAL"

# Read both copies; remember which are valid and their BOOT_SEQ.
setenv cairn_ok1 0
setenv cairn_ok2 0
run cairn_forget
if load ${cairn_dev} @ENV1_ADDR@ @STATE_1@ && itest ${filesize} == ${cairn_state_size} && env import -c @ENV1_ADDR@ ${cairn_state_size} ${cairn_vars} && test -n "${BOOT_SEQ}"; then
	setenv cairn_ok1 1
	setenv cairn_seq1 ${BOOT_SEQ}
else
	echo "cairn: boot state copy 1 (@STATE_1@) is missing or damaged; skipped"
fi
run cairn_forget
if load ${cairn_dev} @ENV2_ADDR@ @STATE_2@ && itest ${filesize} == ${cairn_state_size} && env import -c @ENV2_ADDR@ ${cairn_state_size} ${cairn_vars} && test -n "${BOOT_SEQ}"; then
	setenv cairn_ok2 1
	setenv cairn_seq2 ${BOOT_SEQ}
else
	echo "cairn: boot state copy 2 (@STATE_2@) is missing or damaged; skipped"
fi

# Current copy: the valid one with the higher BOOT_SEQ; the write goes to the other one.
setenv cairn_use 0
if test ${cairn_ok1} = 1; then
	setenv cairn_use 1
fi
if test ${cairn_ok2} = 1; then
	if test ${cairn_use} = 0; then
		setenv cairn_use 2
	elif itest ${cairn_seq2} > ${cairn_seq1}; then
		setenv cairn_use 2
	fi
fi
run cairn_forget
if test ${cairn_use} = 1; then
	env import -c @ENV1_ADDR@ ${cairn_state_size} ${cairn_vars}
	setenv cairn_write @STATE_2@
elif test ${cairn_use} = 2; then
	env import -c @ENV2_ADDR@ ${cairn_state_size} ${cairn_vars}
	setenv cairn_write @STATE_1@
else
	# Neither copy is readable: both slots get their tries, A first (an empty slot fails to load and is passed).
	echo "cairn: no valid boot state; both slots get their tries again, A first"
	setenv BOOT_ORDER "A B"
	setenv BOOT_A_LEFT @TRIES@
	setenv BOOT_B_LEFT @TRIES@
	setenv BOOT_SEQ 0
	setenv cairn_write @STATE_1@
fi
if test -z "${BOOT_A_LEFT}"; then
	setenv BOOT_A_LEFT 0
fi
if test -z "${BOOT_B_LEFT}"; then
	setenv BOOT_B_LEFT 0
fi

# The first slot in BOOT_ORDER with tries left.
setenv cairn_slot
setenv cairn_known 0
for cairn_try in ${BOOT_ORDER}; do
	if test "${cairn_try}" = "A"; then
		setenv cairn_known 1
		if test -z "${cairn_slot}" && itest ${BOOT_A_LEFT} > 0; then
			setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
			setenv cairn_slot a
			setenv cairn_slot_name A
		fi
	elif test "${cairn_try}" = "B"; then
		setenv cairn_known 1
		if test -z "${cairn_slot}" && itest ${BOOT_B_LEFT} > 0; then
			setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
			setenv cairn_slot b
			setenv cairn_slot_name B
		fi
	fi
done
if test ${cairn_known} = 0; then
	setenv BOOT_ORDER "A B"
fi
if test -z "${cairn_slot}"; then
	echo "cairn: no slot has boot attempts left; giving both @TRIES@ again and restarting"
	setenv BOOT_A_LEFT @TRIES@
	setenv BOOT_B_LEFT @TRIES@
fi

# Record the attempt before making it: a slot that hangs or fails still used one try.
setexpr BOOT_SEQ ${BOOT_SEQ} + 1
env export -c -s ${cairn_state_size} @EXPORT_ADDR@ ${cairn_vars}
if fatwrite ${cairn_dev} @EXPORT_ADDR@ ${cairn_write} ${cairn_state_size}; then
	echo "cairn: boot state ${BOOT_SEQ} written to ${cairn_write}: order ${BOOT_ORDER}, A left ${BOOT_A_LEFT}, B left ${BOOT_B_LEFT}, trial ${BOOT_TRIAL}"
else
	echo "cairn: WARNING cannot write the boot state to ${cairn_write}"
fi
if test -z "${cairn_slot}"; then
	reset
fi

setenv bootargs "@CMDLINE@ cairn.slot=${cairn_slot}"
if test "${BOOT_TRIAL}" = "${cairn_slot_name}"; then
	setenv bootargs "${bootargs} cairn.trial=1"
fi
echo "cairn: booting slot ${cairn_slot_name}"
if load ${cairn_dev} @KERNEL_ADDR@ slot-${cairn_slot}/@KERNEL@ && load ${cairn_dev} @RAMDISK_ADDR@ slot-${cairn_slot}/initrd.img; then
	@COMMAND@ @KERNEL_ADDR@ @RAMDISK_ADDR@:${filesize} ${fdtcontroladdr}
fi
# Only reached when the slot's files are missing or do not boot: the try is spent, start over.
echo "cairn: slot ${cairn_slot_name} does not boot; restarting"
reset
