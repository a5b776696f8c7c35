package store

import (
	"os"
	"os/exec"
	"testing"
)

func TestOwnerDeadHere(t *testing.T) {
	me := self()
	if me.PID != os.Getpid() || me.Start == 0 || me.BootID == "" {
		t.Fatalf("self() = %+v: no start time or boot id (no /proc?)", me)
	}
	if me.deadHere(me) {
		t.Fatal("this live process is reported dead")
	}
	// A process that has exited and been reaped.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := me
	gone.PID = cmd.Process.Pid
	if !gone.deadHere(me) {
		t.Error("an exited pid is reported alive")
	}
	// The pid lives, but it is not the process that took the run.
	reused := me
	reused.Start = me.Start + 1
	if !reused.deadHere(me) {
		t.Error("a reused pid is reported as the owner")
	}
	// Other hosts and other boots are for the lease TTL to decide.
	elsewhere := gone
	elsewhere.Host = me.Host + "-other"
	if elsewhere.deadHere(me) {
		t.Error("an owner on another host is reported dead")
	}
	rebooted := gone
	rebooted.BootID = "another-boot"
	if rebooted.deadHere(me) {
		t.Error("an owner from another boot is reported dead")
	}
}
