// Live server logs: the server rendered the last lines into the page (they read without
// JavaScript); data-follow asks for the lines after the newest of those (its `since`), and each
// is appended as it comes, in the same form. A reconnecting EventSource asks from that `since`
// again: the lines it already showed are skipped by their stamp, replica and text.
(function () {
  var log = document.getElementById("server-log");
  if (!log || !window.EventSource) return;
  var source = new EventSource(log.getAttribute("data-follow"));
  var seen = {};
  source.onmessage = function (event) {
    var line = JSON.parse(event.data);
    var key = line.at + line.replica + line.text;
    if (seen[key]) return;
    seen[key] = true;
    var empty = document.getElementById("server-log-empty");
    if (empty) empty.parentNode.removeChild(empty);
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(document.createTextNode(
      line.at.slice(11, 19) + " " + line.replica + " " + line.text + "\n"));
    if (atBottom) log.scrollTop = log.scrollHeight;
  };
})();

// Live build log: while the revision is queued or building, its log is followed over the
// API's handler (a plain text stream that ends with the build) and replaces the snapshot.
(function () {
  var log = document.getElementById("build-log-text");
  if (!log || !window.fetch || !window.TextDecoder) return;
  fetch(log.getAttribute("data-follow"), { credentials: "same-origin" }).then(function (answer) {
    if (!answer.ok || !answer.body) return;
    var reader = answer.body.getReader(), decoder = new TextDecoder(), first = true;
    function more() {
      return reader.read().then(function (part) {
        if (part.done) return;
        var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        if (first) { log.textContent = ""; first = false; }
        log.appendChild(document.createTextNode(decoder.decode(part.value, { stream: true })));
        if (atBottom) log.scrollTop = log.scrollHeight;
        return more();
      });
    }
    return more();
  });
})();
