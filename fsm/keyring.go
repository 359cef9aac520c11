package fsm

// KeyringChanged returns a channel that is closed the next time the
// replicated keyring may have changed: a signing key added or retired, or
// the whole state restored from a snapshot. It is a broadcast: every
// caller holding the channel is woken, and a caller that wants the change
// after that one asks again. Read the keys with [FSM.SigningKeys] after
// taking the channel, so that no change falls between the two.
func (f *FSM) KeyringChanged() <-chan struct{} {
	f.keyMu.Lock()
	defer f.keyMu.Unlock()
	return f.keySig
}

// signalKeyring wakes the holders of the current KeyringChanged channel.
// It runs on the apply goroutine after the new keys are visible.
func (f *FSM) signalKeyring() {
	f.keyMu.Lock()
	close(f.keySig)
	f.keySig = make(chan struct{})
	f.keyMu.Unlock()
}
