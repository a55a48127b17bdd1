<%inherit file="base.mako"/>
<h1>Deployments</h1>
% if not groups:
<p>No deployment you can see yet. Push to a repository where the App is installed.</p>
% else:
<table class="grid">
<caption class="sr">Deployments, previews under their production deployment</caption>
<thead><tr><th scope="col">Name</th><th scope="col">URL</th><th scope="col">Type</th><th scope="col">Branch</th><th scope="col">State</th><th scope="col">Live revision</th><th scope="col">Replicas</th><th scope="col">Last deploy</th><th scope="col">Requests, last hour</th></tr></thead>
<tbody>
% for group in groups:
  % for row in group:
<tr class="${'preview' if row.preview else 'production'}">
  <th scope="row">${'↳ ' if row.preview else ''}<a href="/dashboard/deployments/${row.view.id}">${row.view.slug}</a><br><span class="hint">${row.view.repository}</span></th>
  <td><a href="${row.view.url}">${row.view.url}</a></td>
  <td>${row.view.type}${' #' + str(row.view.pull_request) if row.view.pull_request else ''}</td>
  <td>${row.view.branch}</td>
  <td><span class="state state-${row.view.status}">${row.view.status}</span></td>
  <td>${'#' + str(row.live_number) if row.live_number else '—'}</td>
  <td>${len(row.view.replicas)} / ${row.view.desired_replicas}</td>
  <td>${row.last_deploy or '—'}</td>
  <td>${row.spark | n}</td>
</tr>
  % endfor
% endfor
</tbody>
</table>
% endif
