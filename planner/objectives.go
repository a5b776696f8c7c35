package planner

import (
	"fmt"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// objectives sets the plan's RTO and RPO estimates and names the culprit
// of each missed objective.
func (b *builder) objectives() {
	path, total := b.p.RecoveryPath()
	b.p.RTO = total
	if rto := b.s.Objectives.RTO.D(); rto > 0 && total > rto {
		b.p.Misses = append(b.p.Misses, b.rtoMiss(path, total, rto))
	}
	if b.intent != lifeboat.IntentFailover {
		return // planned moves stop writes first: nothing is lost
	}
	var worst *loss
	for i := range b.losses {
		if worst == nil || b.losses[i].loss > worst.loss {
			worst = &b.losses[i]
		}
	}
	if worst == nil {
		return
	}
	b.p.RPO = worst.loss
	if rpo := b.s.Objectives.RPO.D(); worst.loss > rpo {
		b.p.Misses = append(b.p.Misses, lifeboat.Miss{Objective: "rpo", Component: worst.ref.String(),
			Estimate: worst.loss, Target: rpo, Why: worst.why})
	}
}

// rtoMiss blames the component with the most time on the critical path.
func (b *builder) rtoMiss(path []*lifeboat.Step, total, rto time.Duration) lifeboat.Miss {
	var order []string
	spent := map[string]time.Duration{}
	parts := map[string][]string{}
	for _, st := range path {
		who := st.ID // hooks and the epoch blame themselves
		if ref, ok := b.compOf[st.ID]; ok {
			who = ref.String()
		}
		if _, seen := spent[who]; !seen {
			order = append(order, who)
		}
		spent[who] += st.Estimate
		parts[who] = append(parts[who], string(st.Op)+" "+lifeboat.FormatDuration(st.Estimate))
	}
	culprit := order[0]
	for _, who := range order {
		if spent[who] > spent[culprit] {
			culprit = who
		}
	}
	return lifeboat.Miss{Objective: "rto", Component: culprit, Estimate: total, Target: rto,
		Why: fmt.Sprintf("%s of the critical path: %s", lifeboat.FormatDuration(spent[culprit]), strings.Join(parts[culprit], " + "))}
}
