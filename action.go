package lifeboat

import (
	"context"
	"fmt"
)

// Action is what a step does to the world. Holds tells whether its effect
// is already there (then the engine records the step done without acting);
// Apply makes it so, and is safe to call again.
type Action interface {
	Holds(ctx context.Context) (bool, error)
	Apply(ctx context.Context) error
}

// ActionFunc builds an Action from two functions.
type ActionFunc struct {
	HoldsFunc func(ctx context.Context) (bool, error)
	ApplyFunc func(ctx context.Context) error
}

func (a ActionFunc) Holds(ctx context.Context) (bool, error) {
	if a.HoldsFunc == nil {
		return false, nil
	}
	return a.HoldsFunc(ctx)
}

func (a ActionFunc) Apply(ctx context.Context) error {
	if a.ApplyFunc == nil {
		return nil
	}
	return a.ApplyFunc(ctx)
}

// TargetOf returns the driver target of a step in a run.
func TargetOf(s *Spec, run string, step *Step) Target {
	return Target{Service: s.Service, Unit: step.Unit, Component: step.Component, Region: step.Region,
		Resource: step.Resource, Epoch: step.Epoch, Run: run, Step: step.ID}
}

// Bind maps a step to the driver calls that carry it out. Approval steps
// are the engine's own and have no action here.
func Bind(s *Spec, d Drivers, run string, step *Step) (Action, error) {
	t := TargetOf(s, run, step)
	need := func(ok bool, kind string) error {
		if !ok {
			return fmt.Errorf("step %s needs a %s driver and none is configured", step.ID, kind)
		}
		return nil
	}
	unit := s.Units[step.Unit]
	switch step.Op {
	case OpRaiseEpoch:
		// The new epoch lives in the state, which the engine writes with the
		// step's done record.
		return ActionFunc{}, nil
	case OpScript:
		if err := need(d.Scripts != nil, "script"); err != nil {
			return nil, err
		}
		return ActionFunc{ApplyFunc: func(ctx context.Context) error { return d.Scripts.Exec(ctx, t, step.Run, step.Env) }}, nil
	case OpComputeProvision, OpComputeScale, OpComputeStop, OpComputeDelete:
		if err := need(d.Compute != nil, "compute"); err != nil {
			return nil, err
		}
		c := unit.Compute[step.Component]
		switch step.Op {
		case OpComputeProvision:
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					st, err := d.Compute.Status(ctx, t)
					return st.Exists, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Compute.Provision(ctx, t, c) },
			}, nil
		case OpComputeDelete:
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					st, err := d.Compute.Status(ctx, t)
					return !st.Exists, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Compute.Delete(ctx, t) },
			}, nil
		default:
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					st, err := d.Compute.Status(ctx, t)
					return st.Exists && st.Instances == step.Instances, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Compute.Scale(ctx, t, step.Instances) },
			}, nil
		}
	case OpDatabaseFence, OpDatabasePromote, OpDatabaseSwitchover, OpDatabaseRejoin:
		if err := need(d.Database != nil, "database"); err != nil {
			return nil, err
		}
		from := t
		from.Region, from.Resource = step.FromRegion, step.FromResource
		role := func(ctx context.Context, t Target) (DatabaseRole, error) {
			st, err := d.Database.Status(ctx, t)
			return st.Role, err
		}
		switch step.Op {
		case OpDatabaseFence:
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					r, err := role(ctx, t)
					return r != DBPrimary, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Database.Fence(ctx, t) },
			}, nil
		case OpDatabasePromote:
			return ActionFunc{
				// Primary for this epoch: a copy still primary from an older
				// epoch (a fence that could not reach it) is not this promote.
				HoldsFunc: func(ctx context.Context) (bool, error) {
					st, err := d.Database.Status(ctx, t)
					return st.Role == DBPrimary && st.Epoch >= t.Epoch, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Database.Promote(ctx, t) },
			}, nil
		case OpDatabaseRejoin:
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					r, err := role(ctx, t)
					return r == DBReplica, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Database.Rejoin(ctx, t, from) },
			}, nil
		default:
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					r, err := role(ctx, t)
					if err != nil || r != DBPrimary {
						return false, err
					}
					r, err = role(ctx, from)
					return r == DBReplica, err
				},
				ApplyFunc: func(ctx context.Context) error { return d.Database.Switchover(ctx, from, t) },
			}, nil
		}
	case OpDatabaseBackup, OpDatabaseRestore:
		if err := need(d.Backup != nil, "backup"); err != nil {
			return nil, err
		}
		if step.Op == OpDatabaseBackup {
			return ActionFunc{
				HoldsFunc: func(ctx context.Context) (bool, error) {
					b, err := d.Backup.Latest(ctx, t)
					return b.Epoch >= t.Epoch, err
				},
				ApplyFunc: func(ctx context.Context) error { _, err := d.Backup.Take(ctx, t); return err },
			}, nil
		}
		if err := need(d.Database != nil, "database"); err != nil {
			return nil, err
		}
		return ActionFunc{
			// Primary for this epoch: a copy left primary by an older epoch
			// (say, a home copy that could not be fenced when its region was
			// lost) does not hold the writes made since.
			HoldsFunc: func(ctx context.Context) (bool, error) {
				st, err := d.Database.Status(ctx, t)
				return st.Role == DBPrimary && st.Epoch >= t.Epoch, err
			},
			ApplyFunc: func(ctx context.Context) error { return d.Backup.Restore(ctx, t) },
		}, nil
	case OpTrafficSwitch:
		if err := need(d.Traffic != nil, "traffic"); err != nil {
			return nil, err
		}
		names := unit.Traffic[step.Component].Names
		return ActionFunc{
			HoldsFunc: func(ctx context.Context) (bool, error) {
				r, err := d.Traffic.Status(ctx, t, names)
				return r.Region == t.Region && r.Epoch >= t.Epoch, err
			},
			ApplyFunc: func(ctx context.Context) error { return d.Traffic.Switch(ctx, t, names) },
		}, nil
	}
	return nil, fmt.Errorf("step %s: no action for op %q", step.ID, step.Op)
}
