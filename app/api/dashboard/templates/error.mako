<%inherit file="base.mako"/>
<h1>${title}</h1>
<p>${message}</p>
<p><a href="/dashboard/">Back to the deployments</a></p>
