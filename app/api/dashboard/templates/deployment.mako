<%inherit file="base.mako"/>
<nav class="crumbs" aria-label="Breadcrumb"><a href="/dashboard/">Deployments</a> › ${view.slug}</nav>
<h1>${view.slug} <span class="state state-${view.status}">${view.status}</span></h1>
<dl class="facts">
  <dt>URL</dt><dd><a href="${view.url}">${view.url}</a></dd>
  <dt>Repository</dt><dd><a href="${repository_url}">${view.repository}</a></dd>
  <dt>Branch</dt><dd>${view.branch}</dd>
  <dt>Type</dt><dd>${view.type}</dd>
  <dt>Replicas</dt><dd>${len(view.replicas)} running, ${view.desired_replicas} wanted</dd>
  % if view.last_exit_reason:
  <dt>Last exit</dt><dd>${view.last_exit_reason}</dd>
  % endif
  % if view.tracing:
  <dt>Tracing</dt>
  <dd>
    % if view.tracing.project_url:
    <a href="${view.tracing.project_url}">${view.tracing.project}</a> on LangSmith
    % else:
    ${view.tracing.project} <span class="note">(the project is not made yet${": " + view.tracing.error if view.tracing.error else ""})</span>
    % endif
    % if view.tracing.studio_url:
    · <a href="${view.tracing.studio_url}">Open in Studio</a>
    % endif
  </dd>
  % endif
  % if view.idle:
  <dt>Last used</dt>
  <dd>
    ${stamp(view.idle.last_used_at) if view.idle.last_used_at else "not counted yet"}
    % if view.idle.keep:
    (kept: never removed for going unused)
    % elif view.idle.remove_at:
    (removed if unused until ${stamp(view.idle.remove_at)}: idle_ttl ${view.idle.idle_ttl})
    % elif view.idle.delete_held:
    (${view.idle.delete_held})
    % elif view.idle.delete_at:
    (deleted if unused until ${stamp(view.idle.delete_at)})
    % endif
  </dd>
  % endif
</dl>

% if writable:
<section aria-labelledby="act">
<h2 id="act">Deploy</h2>
<form method="post" action="/dashboard/deployments/${view.id}/deploy" class="row">
  <input type="hidden" name="csrf_token" value="${csrf}">
  <label for="ref">Branch, tag or commit</label>
  <input id="ref" name="ref" placeholder="${view.branch}">
  <button type="submit">Deploy</button>
</form>
</section>
% endif

<section aria-labelledby="revs">
<h2 id="revs">Revisions</h2>
<table class="grid">
<thead><tr><th scope="col">#</th><th scope="col">Commit</th><th scope="col">State</th><th scope="col">Build</th><th scope="col">Deploy</th><th scope="col">Triggered by</th><th scope="col">Created</th>${'<th scope="col">Action</th>' if writable else '' | n}</tr></thead>
<tbody>
% for rev in revisions:
<tr>
  <th scope="row"><a href="/dashboard/revisions/${rev.id}">#${rev.number}</a></th>
  <td><a href="${commit_url(rev.commit_sha)}"><code>${rev.commit_sha[:7]}</code></a> ${rev.commit_message.splitlines()[0][:80] if rev.commit_message else ''}</td>
  <td><span class="state state-${rev.state.value}">${rev.state.value}</span>${' (rollback)' if rev.rollback_of else ''}${' (a fork\'s commit: waiting for approval)' if rev.approval_required and not rev.approved_by and rev.state.value == 'queued' else ''}${' (approved by ' + rev.approved_by + ')' if rev.approved_by else ''}</td>
  <td>${seconds(rev.build_started_at, rev.build_finished_at)}</td>
  <td>${seconds(rev.deploy_started_at, rev.live_at)}</td>
  <td>${rev.requested_by or 'push'}</td>
  <td>${stamp(rev.created_at)}</td>
  % if writable:
  <td>
    % if rev.approval_required and not rev.approved_by and rev.state.value == 'queued':
    <form method="post" action="/dashboard/deployments/${view.id}/revisions/${rev.id}/approve" class="inline">
      <input type="hidden" name="csrf_token" value="${csrf}">
      <button type="submit" aria-label="Approve and build revision ${rev.number}">Approve and build</button>
    </form>
    % endif
    % if rev.state.value == 'superseded' and rev.image:
    <form method="post" action="/dashboard/deployments/${view.id}/rollback" class="inline">
      <input type="hidden" name="csrf_token" value="${csrf}">
      <input type="hidden" name="revision" value="${rev.number}">
      <button type="submit" aria-label="Roll back to revision ${rev.number}">Roll back</button>
    </form>
    % endif
  </td>
  % endif
</tr>
% endfor
</tbody>
</table>
% if more_revisions:
<p class="hint">${more_revisions} older revisions are not shown.</p>
% endif
</section>

<section aria-labelledby="metrics">
<h2 id="metrics">Metrics, last hour</h2>
<ul class="charts">
% for item in charts:
<li><span class="chart-label">${item.label}</span>${item.svg | n}<span class="hint">${item.summary}</span>
  % if item.keys:
  <ul class="legend">
    % for key in item.keys:
    <li><svg width="18" height="8" aria-hidden="true" focusable="false"><line x1="0" y1="4" x2="18" y2="4" stroke="${key.colour}" stroke-width="2"${(' stroke-dasharray="' + key.dash + '"') if key.dash else '' | n}/></svg> ${key.name}: ${key.summary}</li>
    % endfor
  </ul>
  % endif
</li>
% endfor
</ul>
</section>

<section aria-labelledby="logs">
<h2 id="logs">Server logs</h2>
<p class="hint">What the replicas print, newest at the bottom: the last ${log_limit} lines when the page was made, and with JavaScript each new line as it arrives.
<a href="/dashboard/deployments/${view.id}/logs">The last lines as text</a>.</p>
% if log_lines is None:
<p class="hint" id="server-log-empty">The Docker engine did not answer, so the running replicas' output could not be read; reload the page once it is back.</p>
% elif not log_lines:
<p class="hint" id="server-log-empty">No output yet.</p>
% endif
<pre class="log" id="server-log" aria-labelledby="logs" data-follow="${log_follow_url}" aria-live="polite">
% for line in log_lines or []:
${line}
% endfor
</pre>
</section>

<section aria-labelledby="replicas">
<h2 id="replicas">Replicas</h2>
% if view.replicas:
<table class="grid">
<thead><tr><th scope="col">Replica</th><th scope="col">Revision</th><th scope="col">State</th><th scope="col">Endpoint</th><th scope="col">Started</th></tr></thead>
<tbody>
% for replica in view.replicas:
<tr><th scope="row">${replica.id}</th><td>${replica.revision_id}</td><td>${replica.state}</td><td>${replica.endpoint or '—'}</td><td>${stamp(replica.started_at)}</td></tr>
% endfor
</tbody>
</table>
% else:
<p>No replica is running.</p>
% endif
</section>

<section aria-labelledby="scaling">
<h2 id="scaling">Scaling</h2>
<p>${scaling.current} ready, ${view.desired_replicas} wanted; between ${scaling.policy.min_replicas} and ${scaling.policy.max_replicas} replicas, ${'%g' % scaling.policy.target_concurrency} requests in flight per replica.</p>
% if decisions:
<table class="grid">
<thead><tr><th scope="col">When</th><th scope="col">In flight (stable / panic)</th><th scope="col">Ready</th><th scope="col">Wanted</th><th scope="col">Why</th></tr></thead>
<tbody>
% for d in decisions:
<tr><th scope="row">${stamp(moment(d.at))}</th><td>${'—' if d.stable_concurrency is None else '%.1f' % d.stable_concurrency} / ${'—' if d.panic_concurrency is None else '%.1f' % d.panic_concurrency}</td><td>${d.actual}</td><td>${d.desired}</td><td>${d.reason}</td></tr>
% endfor
</tbody>
</table>
% else:
<p class="hint">No scaling decision yet.</p>
% endif
</section>

<section aria-labelledby="env">
<h2 id="env">Environment</h2>
<table class="grid">
<thead><tr><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
<tbody>
% for name, value in env.variables.items():
<tr><th scope="row"><code>${name}</code></th><td><code>${value}</code></td></tr>
% endfor
% for name in env.secrets:
<tr><th scope="row"><code>${name}</code></th><td><em>secret (not shown)</em></td></tr>
% endfor
% if not env.variables and not env.secrets:
<tr><td colspan="2">No variables.</td></tr>
% endif
</tbody>
</table>
% if previews_env is not None:
<h3 id="previews-env">Previews only</h3>
<p class="hint">What this deployment's previews get over the values above; each preview picks a change up at its next revision.</p>
<table class="grid" aria-labelledby="previews-env">
<thead><tr><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
<tbody>
% for name, value in previews_env.variables.items():
<tr><th scope="row"><code>${name}</code></th><td><code>${value}</code></td></tr>
% endfor
% for name in previews_env.secrets:
<tr><th scope="row"><code>${name}</code></th><td><em>secret (not shown)</em></td></tr>
% endfor
% if not previews_env.variables and not previews_env.secrets:
<tr><td colspan="2">No previews-only variables.</td></tr>
% endif
</tbody>
</table>
% endif
% if writable:
<form method="post" action="/dashboard/deployments/${view.id}/env" class="row">
  <input type="hidden" name="csrf_token" value="${csrf}">
  <label for="env-name">Name</label>
  <input id="env-name" name="name" required pattern="[A-Za-z_][A-Za-z0-9_]*">
  <label for="env-value">Value</label>
  <input id="env-value" name="value">
  <label><input type="checkbox" name="secret" value="1"> secret</label>
  <label><input type="checkbox" name="unset" value="1"> remove</label>
  % if previews_env is not None:
  <label for="env-scope">For</label>
  <select id="env-scope" name="scope">
    <option value="deployment" selected>this deployment</option>
    <option value="previews">its previews only</option>
  </select>
  % endif
  <button type="submit">Save and redeploy</button>
</form>
% endif
</section>

% if writable:
<section aria-labelledby="danger" class="danger">
<h2 id="danger">Delete</h2>
<p>Deleting stops every replica, backs its database up once more and drops it.</p>
<form method="post" action="/dashboard/deployments/${view.id}/delete" class="row">
  <input type="hidden" name="csrf_token" value="${csrf}">
  <label for="confirm">Type <strong>${view.slug}</strong> to confirm</label>
  <input id="confirm" name="confirm" required autocomplete="off">
  <button type="submit" class="danger">Delete ${view.slug}</button>
</form>
</section>
% endif
