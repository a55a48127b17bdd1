// Live server logs: the page already shows the last lines; new ones are appended as they come.
// Without JavaScript the page still reads; this only adds what arrives later.
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
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(document.createTextNode(
      line.at.slice(11, 19) + " " + line.replica + " " + line.text + "\n"));
    if (atBottom) log.scrollTop = log.scrollHeight;
  };
})();
