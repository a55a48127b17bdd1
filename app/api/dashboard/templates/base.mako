<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Slipway</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
<script src="/dashboard/static/dashboard.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/dashboard/">Slipway</a>
  % if viewer is not None:
  <span class="who">Signed in as <strong>${viewer.name}</strong></span>
  <form method="post" action="/dashboard/sign-out" class="inline">
    <input type="hidden" name="csrf_token" value="${viewer.csrf}">
    <button type="submit" class="link">Sign out</button>
  </form>
  % endif
</header>
<main id="main">
% if notice:
<p class="notice" role="status">${notice}</p>
% endif
${self.body()}
</main>
</body>
</html>
