"""The `pbx` command groups (I/O shell: parse options, call pbx.admin and pbx.store, print).

`cli.py` is the root group; it registers the groups and commands defined
here, one module per concept (trunks, destinations, sources, numbers, calls,
block, extensions, doctor, serve, visits/report). Shared plumbing lives in
`common` (store access, errors, output) and `verbs` (the list/show/change
command shapes every group uses).

Conventions for anyone adding a command group:
- define a `click.Group` in a module here and register it in `cli.py`;
- write `list`, `show` and add/update/remove commands with the
  `verbs.list_command` / `verbs.show_command` / `verbs.change_command`
  decorators (the function fetches or changes, the decorator prints), or,
  for a table of named rows, `verbs.Named(group, kind, table)`;
- use `common.run_store(ctx, fn)` to run `async fn(store)` against `--db`;
- raise `pbx.errors.InputError` (or subclasses) for bad input: `run_store`
  and the root group turn it into one line `Error: ...` on stderr, exit 2.
"""
