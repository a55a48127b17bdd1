<%inherit file="base.mako"/>
<nav class="crumbs" aria-label="Breadcrumb">
% if viewer is not None:
<a href="/dashboard/">Deployments</a> › <a href="/dashboard/deployments/${deployment.id}">${deployment.slug}</a> ›
% else:
${deployment.slug} ›
% endif
revision #${revision.number}</nav>
<h1>${deployment.slug} #${revision.number} <span class="state state-${revision.state.value}">${revision.state.value}</span></h1>
<dl class="facts">
  <dt>Commit</dt><dd><a href="${commit_url}"><code>${revision.commit_sha}</code></a></dd>
  <dt>Message</dt><dd>${revision.commit_message}</dd>
  <dt>Triggered by</dt><dd>${revision.requested_by or 'push'}</dd>
  <dt>Created</dt><dd>${stamp(revision.created_at)}</dd>
  <dt>Build</dt><dd>${seconds(revision.build_started_at, revision.build_finished_at)}</dd>
  <dt>Deploy</dt><dd>${seconds(revision.deploy_started_at, revision.live_at)}</dd>
  % if revision.error:
  <dt>Error</dt><dd class="error">${revision.error}</dd>
  % endif
</dl>
<h2 id="build-log">Build log</h2>
% if clipped:
<p class="hint">The first ${clipped} bytes are not shown.</p>
% endif
% if follow_url:
<p class="hint">The revision is still ${revision.state.value}: the log grows here as it builds (reload the page without JavaScript).</p>
<pre class="log" id="build-log-text" aria-labelledby="build-log" aria-live="polite" data-follow="${follow_url}">${log_text or '(no build log yet)'}</pre>
% else:
<pre class="log" aria-labelledby="build-log">${log_text or '(no build log yet)'}</pre>
% endif
