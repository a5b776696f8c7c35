package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/store"
	"github.com/spf13/cobra"
)

func (a *app) auditCommand() *cobra.Command {
	var sinceFlag string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--since 24h|TIME] [--limit N]",
		Short: "The audit trail: every mutating API call, who made it, and how it ended",
		Long: `Print the audit trail kept in the state store: every call that changes
something made through the API (start a run, approve, cancel, resume),
whether it was allowed or refused, with the caller's name and role, its
arguments, the answer and the run it started; and, for each run started
through the API, how it stopped. Records are appended, never changed.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			since, err := api.ParseSince(sinceFlag, time.Now())
			if err != nil {
				return exit(exitSpec, "--since: %v", err)
			}
			ctx := cmd.Context()
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			log, err := store.Audit(s.store)
			if err != nil {
				return err
			}
			recs, err := log.Audit(ctx, since, limit)
			if err != nil {
				return fmt.Errorf("reading the audit trail: %w", err)
			}
			if a.json() {
				if recs == nil {
					recs = []store.AuditRecord{}
				}
				return a.printJSON(recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(a.out, "no audit records yet (the API records every call that changes something)")
				return nil
			}
			w := a.table()
			fmt.Fprintln(w, "SEQ\tTIME\tWHO\tROLE\tACTION\tARGS\tSTATUS\tRUN\tRESULT")
			for _, r := range recs {
				status := "-"
				if r.Status != 0 {
					status = fmt.Sprint(r.Status)
				}
				role := string(r.Role)
				if role == "" {
					role = "-"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, stamp(r.At), r.Who, role, r.Action, auditArgs(r.Args),
					status, orDash(r.Run), truncate(r.Result, 100))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&sinceFlag, "since", "", "only records since this time (RFC 3339) or this long ago (24h)")
	cmd.Flags().IntVar(&limit, "limit", 0, "only the newest N records (0: all)")
	return cmd
}

func auditArgs(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if m[k] != "" {
			parts = append(parts, k+"="+m[k])
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return truncate(strings.Join(parts, " "), 60)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// apiCommand groups the API's helpers: 'lifeboat api token'.
func (a *app) apiCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Helpers for the HTTP API of 'lifeboat serve' (tokens)",
		Args:  args(cobra.NoArgs),
	}
	var name, role string
	token := &cobra.Command{
		Use:   "token --name NAME --role viewer|operator|admin",
		Short: "Make a bearer token: prints it once, and the line to append to api.tokens",
		Long: `Make a random bearer token for a caller. The token is printed once, on
stdout; keep it in the caller's secret store. The line for the tokens file
(api.tokens) holds only the token's SHA-256 and goes to stderr, so that

  lifeboat api token --name alice --role operator 2>>tokens

appends it. Roles: viewer reads; operator starts planned switchovers,
failbacks and rejoins, approves, cancels and resumes; admin also forces a
failover. Restart 'lifeboat serve' to pick up a new line.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := api.ParseRole(role)
			if err != nil {
				return exit(exitSpec, "--role: %v", err)
			}
			tok, line, err := api.NewToken(name, r)
			if err != nil {
				return exit(exitSpec, "--name: %v", err)
			}
			if a.json() {
				return a.printJSON(map[string]string{"name": name, "role": role, "token": tok, "line": line})
			}
			fmt.Fprintln(a.out, tok)
			fmt.Fprintln(a.err, line)
			return nil
		},
	}
	token.Flags().StringVar(&name, "name", "", "the caller's name, as the audit trail will show it")
	token.Flags().StringVar(&role, "role", "", "viewer, operator or admin")
	_ = token.MarkFlagRequired("name")
	_ = token.MarkFlagRequired("role")
	cmd.AddCommand(token)
	return cmd
}
