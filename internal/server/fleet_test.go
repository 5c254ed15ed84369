package server

import (
	"context"

	"github.com/handoff-dev/handoff/internal/control"
)

func (fakeAPI) FleetDrain(context.Context, control.FleetRequest) (*control.FleetStatus, error) {
	return nil, errFake
}

func (fakeAPI) FleetForget(context.Context, control.FleetRequest) (*control.FleetStatus, error) {
	return nil, errFake
}
