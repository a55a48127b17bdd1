<%inherit file="base.mako"/>
<h1>Sign in</h1>
% if github:
<p><a class="button" href="/dashboard/sign-in/github">Sign in with GitHub</a></p>
<p class="hint">You will see the deployments of the repositories GitHub says you can read, and act where you can push.</p>
% else:
<p class="hint">No OAuth client of the GitHub App is known here (an App configured in the environment needs SLIPWAY_GITHUB_CLIENT_ID and SLIPWAY_GITHUB_CLIENT_SECRET): sign in with an API token.</p>
% endif
<form method="post" action="/dashboard/sign-in/token" class="stack">
  <input type="hidden" name="csrf_token" value="${csrf}">
  <label for="token">API token</label>
  <input id="token" name="token" type="password" autocomplete="off" required>
  <button type="submit">Sign in with the token</button>
</form>
